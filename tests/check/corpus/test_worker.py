# Worker arithmetic: WU301-WU303.
import os
import re

import pytest

from worker_utils import get_worker_id, get_worker_num, get_worker_port_offset


def test_environment_reads():
    name = os.environ["PYTEST_XDIST_WORKER"]  # expect: WU301
    name = os.environ.get("PYTEST_XDIST_WORKER", "master")  # expect: WU301
    count = int(os.getenv("PYTEST_XDIST_WORKER_COUNT", "1"))  # expect: WU301
    running = "PYTEST_XDIST_WORKER" in os.environ  # expect: WU301
    assert name and count and running


def test_parsing_the_worker_id(worker_id):
    num = int(worker_id[2:])  # expect: WU302
    num = int(worker_id.replace("gw", ""))  # expect: WU302
    num = int(worker_id.lstrip("gw"))  # expect: WU302
    num = int(worker_id.removeprefix("gw"))  # expect: WU302
    num = int(re.sub(r"\D", "", worker_id))  # expect: WU302
    num = int(os.environ["PYTEST_XDIST_WORKER"][2:])  # expect: WU301, WU302
    assert num


def test_parsing_a_name_assigned_from_the_environment():
    worker = os.environ.get("PYTEST_XDIST_WORKER")  # expect: WU301
    number = int(worker[2:])  # expect: WU302
    port = 8000 + number  # expect: WU303
    assert port


def test_parsing_workerinput(request):
    num = int(request.config.workerinput["workerid"][2:])  # expect: WU302
    assert num


@pytest.fixture
def database_port(worker_id):
    if worker_id == "master":
        return 5432
    offset = int(worker_id[2:]) * 100  # expect: WU302, WU303
    return 5432 + offset


def test_arithmetic_on_worker_numbers(worker_num):
    port = worker_num * 100  # expect: WU303
    port = 8000 + worker_num  # expect: WU303
    port = BASE_PORT + get_worker_num()  # expect: WU303
    db = get_worker_num() % 16  # expect: WU303
    assert port, db


def test_suppressed_by_noqa(worker_id):
    num = int(worker_id[2:])  # noqa: WU302
    assert num


def test_near_misses(worker_id, monkeypatch):
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw3")
    monkeypatch.delenv("PYTEST_XDIST_WORKER_COUNT", raising=False)
    name = get_worker_id()
    num = get_worker_num()
    label = num + 1
    offset = get_worker_port_offset()
    port = 8000 + offset
    schema = f"test_{worker_id}"
    if worker_id == "master":
        pass
    count = int(os.environ["OTHER_COUNT"]) * 100
    assert name and label and port and schema and count
