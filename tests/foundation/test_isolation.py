"""Isolation claims proven by real runs: crashes, restarts and concurrent runs."""

from __future__ import annotations

import itertools
import subprocess
import sys
import tempfile
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import RECORD_SNIPPET

CRASH_SUITE = (
    RECORD_SNIPPET
    + """
import os, time
from pathlib import Path
import pytest
import worker_utils as wu

STARTED = Path(os.environ["WU_TEST_RECORD_DIR"]).parent

def pytest_sessionstart(session):
    (STARTED / f"started-{wu.get_worker_id()}").touch()

# First in the file, so the crashing worker's queue still holds tests.
def test_crash():
    os._exit(1)

@pytest.mark.parametrize("n", range(30))
def test_work(n, worker_tmp_path, worker_port):
    # Hold every worker until the replacement has started, so that the
    # survivor cannot run the whole queue alone, however slow the host is.
    deadline = time.monotonic() + 60
    while not (STARTED / "started-gw2").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    port = worker_port()
    time.sleep(0.05)
    record(id=wu.get_worker_id(), tmp=str(worker_tmp_path), port=port,
           tmp_exists=worker_tmp_path.is_dir())
"""
)


def test_a_replacement_worker_gets_its_own_directory_and_ports(
    pytester: pytest.Pytester, read_records: Callable[[], list[dict[str, Any]]]
) -> None:
    pytester.makepyfile(test_crash=CRASH_SUITE)
    pytester.makeconftest("from test_crash import pytest_sessionstart  # noqa: F401")
    # The controller in this process: only a worker crashes.
    result = pytester.runpytest("-n", "2", "--max-worker-restart=1", "-p", "no:randomly")
    result.assert_outcomes(passed=30, failed=1)
    result.stdout.fnmatch_lines(["*worker 'gw*' crashed while running 'test_crash.py::test_crash'"])
    records = read_records()
    ids = {r["id"] for r in records}
    assert "gw2" in ids, f"the replacement worker ran tests: {ids}"
    tmp_by_worker = {r["id"]: r["tmp"] for r in records}
    assert len(set(tmp_by_worker.values())) == len(tmp_by_worker)
    assert Path(tmp_by_worker["gw2"]).name == "gw2"
    assert all(r["tmp_exists"] for r in records)
    assert all(1 <= r["port"] <= 65535 for r in records)


# Each test holds five ports at once; a small range forces both runs to reuse
# the same ports over and over, so a broken lease would show as an overlap.
PORT_SUITE = (
    RECORD_SNIPPET
    + """
import os, time
from pathlib import Path
import pytest
import worker_utils as wu

def build():
    with open(os.environ["WU_TEST_ONCE_LOG"], "a") as log:
        log.write("compute " + wu.get_testrun_uid() + "\\n")
    return {"uid": wu.get_testrun_uid()}

def drop(value):
    with open(os.environ["WU_TEST_ONCE_LOG"], "a") as log:
        log.write("teardown " + value["uid"] + "\\n")

@pytest.fixture(scope="session", autouse=True)
def both_runs_started():
    # Every worker waits for the other run's, so the two runs surely overlap.
    started = Path(os.environ["WU_TEST_ONCE_LOG"]).parent
    (started / f"started-{wu.get_testrun_uid()}-{wu.get_worker_id()}").touch()
    deadline = time.monotonic() + 60
    while len(list(started.glob("started-*"))) < 4 and time.monotonic() < deadline:
        time.sleep(0.05)

@pytest.mark.parametrize("n", range(10))
def test_ports(n, worker_port, run_tmp_path, run_once):
    shared = run_once("shared", build, teardown=drop)
    assert shared == {"uid": wu.get_testrun_uid()}
    ports = [worker_port() for _ in range(5)]
    # From here to the end every port is surely held: a window within the real
    # one, so two windows that overlap mean a port really was held twice.
    start = time.monotonic()
    time.sleep(0.05)
    record(uid=wu.get_testrun_uid(), id=wu.get_worker_id(), ports=ports,
           start=start, end=time.monotonic(), run_tmp=str(run_tmp_path))
"""
)


def test_two_concurrent_runs_never_hold_the_same_port_and_share_nothing(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    read_records: Callable[[], list[dict[str, Any]]],
) -> None:
    once_log = pytester.path / "once.log"
    monkeypatch.setenv("WU_TEST_ONCE_LOG", str(once_log))
    pytester.makepyfile(test_ports=PORT_SUITE)
    pytester.makeini("[pytest]\nworker_utils_port_range = 19100-19129\n")
    # One run in a process of its own, the other meanwhile in this one.
    command = [sys.executable, "-m", "pytest", "-n", "2", "-p", "no:cacheprovider", "-q"]
    other = subprocess.Popen(command, cwd=pytester.path, stdout=subprocess.PIPE, text=True)
    try:
        result = pytester.runpytest("-n", "2", "-p", "no:cacheprovider", "-q")
    finally:
        output = other.communicate(timeout=240)[0]
    assert other.returncode == 0, output
    result.assert_outcomes(passed=10)

    records = read_records()
    assert len(records) == 20
    uids = {r["uid"] for r in records}
    assert len(uids) == 2
    assert len({r["run_tmp"] for r in records}) == 2
    assert sum(len(r["ports"]) for r in records) == 100
    holds: dict[int, list[tuple[float, float]]] = defaultdict(list)
    for r in records:
        assert len(set(r["ports"])) == 5
        for port in r["ports"]:
            assert 19100 <= port <= 19129
            holds[port].append((r["start"], r["end"]))
    assert any(len(spans) > 1 for spans in holds.values()), "ports were reused across tests"
    runs = [[r for r in records if r["uid"] == uid] for uid in uids]
    first, second = ((min(r["start"] for r in run), max(r["end"] for r in run)) for run in runs)
    assert max(first[0], second[0]) < min(first[1], second[1]), "the two runs did not overlap"
    for port, spans in holds.items():
        spans.sort()
        for (_, end), (start, _) in itertools.pairwise(spans):
            assert end <= start, f"port {port} was held twice at once"

    log = once_log.read_text().splitlines()
    assert sorted(log) == sorted([f"compute {u}" for u in uids] + [f"teardown {u}" for u in uids])
    for record in records:
        assert not Path(record["run_tmp"]).exists()


def test_a_socket_path_fits_even_under_a_deep_temp_root(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    deep = pytester.path / ("d" * 60) / ("e" * 60) / ("f" * 60) / ("g" * 30)
    deep.mkdir(parents=True)
    assert len(str(deep)) > 200
    monkeypatch.setenv("TMPDIR", str(deep))
    monkeypatch.setattr(tempfile, "tempdir", str(deep))  # the controller runs in this process
    pytester.makepyfile(
        f"""
        import os, socket
        from pathlib import Path

        def test_bind(worker_socket_path, worker_tmp_path):
            assert str(worker_tmp_path).startswith({str(deep)!r})
            paths = [worker_socket_path("db.sock"), worker_socket_path("db.sock")]
            assert paths[0] != paths[1]
            for path in paths:
                assert len(os.fsencode(path)) <= 107
                with socket.socket(socket.AF_UNIX) as sock:
                    sock.bind(str(path))
                    sock.listen()
            Path({str(pytester.path)!r}, "short_dir").write_text(str(paths[0].parent))
        """
    )
    result = pytester.runpytest("-n", "2")
    result.assert_outcomes(passed=1)
    short_dir = Path((pytester.path / "short_dir").read_text())
    assert not short_dir.exists(), "the short socket directory is removed after the test"


def test_a_socket_path_stays_in_the_worker_directory_when_it_fits(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        import os, socket

        def test_shallow_root_keeps_sockets_in_the_worker_dir(worker_socket_path, worker_tmp_path):
            assert len(os.fsencode(worker_tmp_path / "api.sock")) <= 107  # a shallow root
            path = worker_socket_path("api.sock")
            assert path == worker_tmp_path / "api.sock"
            with socket.socket(socket.AF_UNIX) as sock:
                sock.bind(str(path))
        """
    )
    pytester.runpytest("-p", "no:xdist").assert_outcomes(passed=1)


def test_every_test_can_bind_the_same_socket_name(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import socket
        import pytest

        @pytest.mark.parametrize("n", range(3))
        def test_bind(worker_socket_path, n):
            with socket.socket(socket.AF_UNIX) as sock:
                sock.bind(str(worker_socket_path("api.sock")))
        """
    )
    pytester.runpytest("-p", "no:xdist").assert_outcomes(passed=3)
    pytester.runpytest("-n", "2").assert_outcomes(passed=3)
