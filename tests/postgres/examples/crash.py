"""Tests that record their namespace; one kills its own worker once, others can hang."""

import json
import os
import signal
import time
import uuid
from pathlib import Path

import pytest

RECORDS = Path(os.environ["WU_TEST_RECORD_DIR"])


def record(**data):
    (RECORDS / f"{uuid.uuid4().hex}.json").write_text(json.dumps(data))


@pytest.mark.parametrize("n", range(4))
def test_records_what_it_sees(worker_postgres, worker_postgres_schema, n):
    port, started, data = worker_postgres.execute(
        "SELECT inet_server_port(), pg_postmaster_start_time()::text,"
        " current_setting('data_directory')"
    ).fetchone()
    worker_postgres.execute("CREATE TABLE t (id int PRIMARY KEY)")
    worker_postgres.execute("INSERT INTO t VALUES (1)")
    record(schema=worker_postgres_schema, port=port, started=started, data=data)
    if os.environ.get("WU_TEST_HANG"):
        (RECORDS / f"ready-{os.getpid()}").touch()
        time.sleep(120)


def test_kills_its_worker_once(worker_postgres):
    flag = RECORDS / "killed"
    if os.environ.get("WU_TEST_KILL") and not flag.exists():
        flag.touch()
        os.kill(os.getpid(), signal.SIGKILL)
