"""Tests that record which file they got and what they saw, spread over the workers."""

import json
import os
import uuid
from pathlib import Path

import pytest

from worker_utils import sqlite

RECORDS = Path(os.environ["WU_TEST_RECORD_DIR"])


def record(**data):
    (RECORDS / f"{uuid.uuid4().hex}.json").write_text(json.dumps(data))


@pytest.fixture(scope="session")
def worker_sqlite_setup():
    def setup(conn):
        record(setup=os.getpid())
        conn.execute("CREATE TABLE hit (worker TEXT NOT NULL)")

    return setup


@pytest.mark.parametrize("n", range(8))
def test_commits_its_worker_id_and_sees_only_its_own(worker_sqlite_path, n):
    worker = os.environ.get("PYTEST_XDIST_WORKER", "master")
    with sqlite.connect(worker_sqlite_path) as conn:
        conn.execute("INSERT INTO hit VALUES (?)", [worker])
        seen = [row[0] for row in conn.execute("SELECT worker FROM hit")]
    conn.close()
    record(worker=worker, path=str(worker_sqlite_path), seen=seen)
