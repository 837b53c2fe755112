"""Tests that record the servers, schema and Redis lease they hold, then hang until stopped."""

import json
import os
import time
import uuid
from pathlib import Path

import psutil
import pytest

RECORDS = Path(os.environ["WU_TEST_RECORD_DIR"])


def identity(pid):
    process = psutil.Process(pid)
    return {"pid": pid, "started": process.create_time()}


@pytest.mark.parametrize("n", range(2))
def test_holds_its_resources_until_stopped(
    worker_postgres, worker_postgres_schema, worker_redis, worker_redis_lease, n
):
    backend, data, sockets = worker_postgres.execute(
        "SELECT pg_backend_pid(), current_setting('data_directory'),"
        " current_setting('unix_socket_directories')"
    ).fetchone()
    record = dict(
        run=os.environ["WORKER_UTILS_TESTRUN_UID"],
        run_dir=os.environ["WORKER_UTILS_RUN_DIR"],
        schema=worker_postgres_schema,
        postgres=identity(psutil.Process(backend).ppid()),
        data=data,
        sockets=sockets,
        redis=identity(worker_redis.info("server")["process_id"]),
        redis_url=worker_redis_lease.server_url,
        worker=identity(os.getpid()),
    )
    (RECORDS / f"{uuid.uuid4().hex}.json").write_text(json.dumps(record))
    time.sleep(120)
