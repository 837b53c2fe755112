"""A worker that dies in the middle of a test, once, after writing to its database."""

import json
import os
import signal
import time
import uuid
from pathlib import Path

import psutil
import pytest

RECORDS = Path(os.environ["WU_TEST_RECORD_DIR"])


@pytest.mark.parametrize("n", range(16))
def test_the_database_is_empty_and_ours(worker_redis, worker_redis_lease, n):
    assert worker_redis.dbsize() == 0
    worker_redis.set("left", "behind")
    data = dict(
        db=worker_redis_lease.db,
        mode=worker_redis_lease.mode,
        reclaimed=worker_redis_lease.reclaimed,
        count=worker_redis_lease.database_count,
        server=worker_redis.info("server")["process_id"],
        server_started=psutil.Process(worker_redis.info("server")["process_id"]).create_time(),
        run=os.environ["WORKER_UTILS_TESTRUN_UID"],
        worker=os.environ.get("PYTEST_XDIST_WORKER", "master"),
        pid=os.getpid(),
        time=time.time(),
    )
    (RECORDS / f"{uuid.uuid4().hex}.json").write_text(json.dumps(data))
    marker = RECORDS / "crashed"
    worker = os.environ.get("PYTEST_XDIST_WORKER", "master")
    if os.environ.get("WU_TEST_CRASH") == worker and n >= 3 and not marker.exists():
        marker.touch()
        os.kill(os.getpid(), signal.SIGKILL)
    if marker.exists() and os.environ.get("WU_TEST_CRASH", "").startswith("gw"):
        # Hold the survivor until the replacement runs a test, so that it gets
        # work however slowly it starts on a loaded host.
        started = RECORDS / "replacement-started"
        if worker == "gw2":
            started.touch()
        deadline = time.monotonic() + 60
        while not started.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
    time.sleep(0.02)
