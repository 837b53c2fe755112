"""Two small tests that record which database they got; for many concurrent runs."""

import json
import os
import time
import uuid
from pathlib import Path

import pytest


@pytest.mark.parametrize("n", range(2))
def test_the_database_starts_empty(worker_redis, worker_redis_lease, n):
    if worker_redis_lease.mode == "index":
        assert worker_redis.dbsize() == 0
        worker_redis.set("mine", n)
    else:
        assert list(worker_redis.scan_iter(match=worker_redis_lease.prefix + "*")) == []
        worker_redis.set(worker_redis_lease.prefix + "mine", n)
    time.sleep(0.05)
    directory = Path(os.environ["WU_TEST_RECORD_DIR"])
    wanted = int(os.environ.get("WU_TEST_HOLD_UNTIL_PREFIXED", "0"))
    if worker_redis_lease.mode == "index" and wanted:
        # Keep the database until the workers that found none have fallen back.
        deadline = time.monotonic() + 60
        while len(list(directory.glob("prefix-*"))) < wanted and time.monotonic() < deadline:
            time.sleep(0.05)
    data = dict(
        db=worker_redis_lease.db,
        mode=worker_redis_lease.mode,
        waited=worker_redis_lease.waited,
        reclaimed=worker_redis_lease.reclaimed,
        count=worker_redis_lease.database_count,
        run=os.environ["WORKER_UTILS_TESTRUN_UID"],
        worker=os.environ.get("PYTEST_XDIST_WORKER", "master"),
        pid=os.getpid(),
        time=time.time(),
    )
    if worker_redis_lease.mode == "prefix":
        (directory / f"prefix-{data['worker']}").touch()
    (directory / f"{uuid.uuid4().hex}.json").write_text(json.dumps(data))
