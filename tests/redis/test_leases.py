"""The lease API itself, without pytest in between: atomic claims, release, loss."""

from __future__ import annotations

import threading
import time

import pytest

from tests.redis.conftest import Server
from worker_utils import RedisLease, RedisSetupError, lease_redis
from worker_utils.redis import parse_redis_url


def env(worker: str) -> dict[str, str]:
    return {"PYTEST_XDIST_WORKER": worker, "WORKER_UTILS_TESTRUN_UID": "leasetest"}


def test_twenty_workers_claiming_at_once_get_fourteen_distinct_databases_and_six_prefixes(
    redis_server: Server,
) -> None:
    url = parse_redis_url(redis_server.url)
    leases: list[RedisLease] = []
    start = threading.Barrier(20)

    def claim(n: int) -> None:
        start.wait()
        leases.append(lease_redis(url, wait=0.5, env=env(f"gw{n}"), notify=lambda _: None))

    threads = [threading.Thread(target=claim, args=(n,)) for n in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        dbs = sorted(lease.db for lease in leases if lease.mode == "index")
        assert dbs == list(range(1, 15))
        prefixed = [lease for lease in leases if lease.mode == "prefix"]
        assert len({lease.prefix for lease in prefixed}) == 6
        assert {lease.db for lease in prefixed} == {15}
    finally:
        for lease in leases:
            lease.release()
    assert redis_server.keys_by_db() == {}


def test_a_released_database_is_empty_and_free_for_the_next_worker(redis_server: Server) -> None:
    url = parse_redis_url(redis_server.url)
    first = lease_redis(url, env=env("gw0"))
    first.client().set("k", "v")
    assert redis_server.keys_by_db() == {
        0: [b"worker_utils:dirty:1", b"worker_utils:lease:1"],
        1: [b"k"],
    }
    first.release()
    assert redis_server.keys_by_db() == {}
    second = lease_redis(url, env=env("gw7"))  # prefers 8, and 8 is free
    assert second.db == 8
    second.release()


def test_a_lease_lost_while_the_worker_stalled_is_reported_and_its_index_never_flushed(
    redis_server: Server,
) -> None:
    url = parse_redis_url(redis_server.url)
    lease = lease_redis(url, ttl=0.3, env=env("gw0"))
    try:
        with redis_server.client() as bookkeeping:
            bookkeeping.delete("worker_utils:lease:1")  # as if it had expired
            bookkeeping.set("worker_utils:lease:1", "another owner")
        deadline = time.monotonic() + 5
        while not lease.lost:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        with redis_server.client(1) as other:
            other.set("theirs", 1)
        lease.clean()
        assert redis_server.keys_by_db()[1] == [b"theirs"]
    finally:
        lease.release()
    assert redis_server.keys_by_db() == {0: [b"worker_utils:dirty:1", b"worker_utils:lease:1"],
                                         1: [b"theirs"]}  # fmt: skip


def test_the_api_raises_redis_setup_error_with_the_same_message(redis_server: Server) -> None:
    url = parse_redis_url(f"redis://127.0.0.1:{redis_server.port}/16", setting="REDIS_URL")
    with pytest.raises(RedisSetupError) as excinfo:
        lease_redis(url, setting="REDIS_URL", env=env("gw0"))
    assert str(excinfo.value) == (
        f"worker_redis: database 16 in REDIS_URL (redis://127.0.0.1:{redis_server.port}/16) "
        f"is out of range: the server has 16 (0-15); name one of those, such as 0"
    )
