"""A suite that fails if any other worker or run shares its Redis database.

Every test uses the same key and channel names and asserts exact counts.
"""

import json
import os
import time
import uuid
from pathlib import Path

import pytest
import redis


def record(**data):
    directory = Path(os.environ["WU_TEST_RECORD_DIR"])
    (directory / f"{uuid.uuid4().hex}.json").write_text(json.dumps(data))


def seen(lease, **extra):
    record(
        db=lease.db,
        mode=lease.mode,
        prefix=lease.prefix,
        run=os.environ["WORKER_UTILS_TESTRUN_UID"],
        worker=os.environ.get("PYTEST_XDIST_WORKER", "master"),
        pid=os.getpid(),
        time=time.time(),
        **extra,
    )


def our_keys(client, lease):
    if lease.mode == "index":
        return sorted(client.keys("*"))
    return sorted(k[len(lease.prefix) :] for k in client.scan_iter(match=lease.prefix + "*"))


def key(lease, name):
    return name if lease.mode == "index" else lease.prefix + name


@pytest.mark.parametrize("n", range(6))
def test_counts_are_exact_through_the_fixture_client(worker_redis, worker_redis_lease, n):
    lease = worker_redis_lease
    assert our_keys(worker_redis, lease) == []
    assert worker_redis.incr(key(lease, "counter")) == 1
    worker_redis.rpush(key(lease, "queue"), *range(n + 1))
    time.sleep(0.01)  # let other workers interleave
    assert worker_redis.llen(key(lease, "queue")) == n + 1
    assert our_keys(worker_redis, lease) == [b"counter", b"queue"]
    if lease.mode == "index":
        assert worker_redis.dbsize() == 2
    seen(lease, via="fixture")


@pytest.mark.parametrize("n", range(6))
def test_counts_are_exact_through_an_application_client(worker_redis_url, worker_redis_lease, n):
    lease = worker_redis_lease
    with redis.Redis.from_url(worker_redis_url, decode_responses=True) as app:
        assert app.get(key(lease, "counter")) is None
        assert app.incr(key(lease, "counter")) == 1
        app.hset(key(lease, "user:1"), mapping={"name": "ada", "n": n})
        time.sleep(0.01)
        assert app.hgetall(key(lease, "user:1")) == {"name": "ada", "n": str(n)}
        assert app.incr(key(lease, "counter")) == 2
        assert our_keys(app, lease) == ["counter", "user:1"]
    seen(lease, via="application")


@pytest.mark.parametrize("n", range(3))
def test_a_channel_has_exactly_one_subscriber(
    worker_redis, worker_redis_prefix, worker_redis_lease, n
):
    channel = worker_redis_prefix + "events"
    pubsub = worker_redis.pubsub()
    try:
        pubsub.subscribe(channel)
        assert pubsub.get_message(timeout=2)["type"] == "subscribe"
        assert worker_redis.pubsub_numsub(channel) == [(channel.encode(), 1)]
        assert worker_redis.publish(channel, f"hello {n}") == 1
        message = pubsub.get_message(timeout=2)
        assert message["data"] == f"hello {n}".encode()
    finally:
        pubsub.close()
    seen(worker_redis_lease, via="pubsub")
