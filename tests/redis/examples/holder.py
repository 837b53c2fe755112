"""Each worker holds its database, with a key in it, until the test that runs it says go."""

import os
import time
from pathlib import Path

SIGNALS = Path(os.environ["WU_TEST_SIGNALS"])


def test_holds_its_database_until_told(worker_redis, worker_redis_db):
    worker = os.environ["PYTEST_XDIST_WORKER"]
    worker_redis.set("mine", worker)
    # Written, then renamed: the test never reads the signal half written.
    ready = SIGNALS / f".holder-ready-{worker}"
    ready.write_text(str(worker_redis_db))
    ready.rename(SIGNALS / f"holder-ready-{worker}")
    deadline = time.monotonic() + 120
    while not (SIGNALS / "go").exists():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert worker_redis.keys("*") == [b"mine"]
    assert worker_redis.get("mine") == worker.encode()
