"""Every worker tries to wipe the server from prefix mode; every worker's own key must survive."""

import os
import time
from pathlib import Path

import pytest
import redis

SIGNALS = Path(os.environ["WU_TEST_SIGNALS"])
WIPES = [
    ("FLUSHDB",),
    ("FLUSHALL",),
    ("SWAPDB", 0, 15),
    ("SELECT", 0),
    ("CONFIG", "SET", "maxmemory", "1"),
    ("CLIENT", "KILL", "TYPE", "normal"),
    ("ACL", "SETUSER", "intruder", "on"),
    ("SHUTDOWN", "NOSAVE"),
]
# Reads among the admin commands, which libraries make (RQ lists its clients).
READS = [
    ("CLIENT", "LIST"),
    ("CONFIG", "GET", "maxmemory"),
    ("ROLE",),
    ("LASTSAVE",),
    ("MODULE", "LIST"),
    ("SLOWLOG", "GET"),
]


def wait_for(pattern, count):
    deadline = time.monotonic() + 60
    while len(list(SIGNALS.glob(pattern))) < count:
        assert time.monotonic() < deadline, f"waited for {count} {pattern}"
        time.sleep(0.02)


def test_wiping_the_server_reaches_nobody_else(worker_redis, worker_redis_url, worker_redis_prefix):
    worker = os.environ["PYTEST_XDIST_WORKER"]
    worker_redis.set(worker_redis_prefix + "mine", worker)
    (SIGNALS / f"flusher-ready-{worker}").touch()
    wait_for("flusher-ready-*", 2)
    with redis.Redis.from_url(worker_redis_url) as app:
        for command in WIPES:
            with pytest.raises(redis.exceptions.NoPermissionError):
                app.execute_command(*command)
        with pytest.raises(redis.exceptions.NoPermissionError):
            app.get("user-key")
        for command in READS:
            app.execute_command(*command)
    (SIGNALS / f"flusher-done-{worker}").touch()
    wait_for("flusher-done-*", 2)
    assert worker_redis.get(worker_redis_prefix + "mine") == worker.encode()
