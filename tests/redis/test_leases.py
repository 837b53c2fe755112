"""The lease API itself, without pytest in between: atomic claims, release, loss."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.redis.conftest import Server
from worker_utils import RedisLease, RedisSetupError, lease_redis
from worker_utils.redis import parse_redis_url, release_abandoned


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


HOLDER = """
import json, sys
from worker_utils.redis import lease_redis, parse_redis_url

lease = lease_redis(parse_redis_url(sys.argv[1]), ttl=float(sys.argv[2]),
                    env={"PYTEST_XDIST_WORKER": "gw0", "WORKER_UTILS_TESTRUN_UID": "holder"})
lease.client().set("mine", 1)
print(lease.db, flush=True)
print(json.dumps(lease.abandon_record()), flush=True)
sys.stdin.readline()
print("lost" if lease.lost else "held", lease.client().get("mine"), flush=True)
lease.release()
"""


def hold_in_child(server: Server, ttl: float) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    """A process holding the server's only leasable database, and its lease's abandon record.

    The process reports on its lease on a line of input.
    """
    child = subprocess.Popen(
        [sys.executable, "-c", HOLDER, server.url, str(ttl)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert child.stdout is not None
    assert child.stdout.readline() == "1\n"
    return child, json.loads(child.stdout.readline())


@contextlib.contextmanager
def stopped(child: subprocess.Popen[str]) -> Iterator[None]:
    """SIGSTOP ``child`` during the block; after it, the child must still hold its lease."""
    os.kill(child.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(child.pid, signal.SIGCONT)
    assert child.communicate("report\n", timeout=10)[0] == "held b'1'\n"


def stop(child: subprocess.Popen[str]) -> None:
    child.kill()
    child.communicate()


def claim_only_database(server: Server, wait: float) -> RedisLease:
    return lease_redis(
        parse_redis_url(server.url), mode="index", wait=wait, env=env("gw5"), notify=lambda _: None
    )


def test_a_lease_stays_held_while_its_worker_is_stopped_for_many_ttls(
    redis_server_factory: Callable[..., Server],
) -> None:
    server = redis_server_factory("--databases", "3")  # 0 leases, 2 prefix mode, 1 leasable
    child, _ = hold_in_child(server, ttl=0.2)
    try:
        with stopped(child):
            time.sleep(1.0)  # five TTLs: no refresh could have run
            with pytest.raises(RedisSetupError, match="no free database"):
                claim_only_database(server, wait=0.5)
    finally:
        stop(child)
    assert server.keys_by_db() == {}


def test_a_killed_workers_lease_is_taken_over_within_seconds_and_its_teardown_spares_it(
    redis_server_factory: Callable[..., Server],
) -> None:
    server = redis_server_factory("--databases", "3")
    child, abandoned = hold_in_child(server, ttl=30)
    stop(child)
    started = time.monotonic()
    lease = claim_only_database(server, wait=10)
    try:
        assert (lease.db, lease.reclaimed) == (1, True)
        assert time.monotonic() - started < 3
        lease.client().set("theirs", 1)
        # The dead worker's run ends: its teardown frees what the worker held, if it still does.
        release_abandoned(abandoned)
        assert server.keys_by_db() == {
            0: [b"worker_utils:dirty:1", b"worker_utils:lease:1"],
            1: [b"theirs"],
        }
        assert not lease.lost
        lease.clean()
        assert server.keys_by_db()[0] == [b"worker_utils:dirty:1", b"worker_utils:lease:1"]
    finally:
        lease.release()
    assert server.keys_by_db() == {}
    with server.client() as admin:
        assert admin.acl_users() == ["default"]  # the dead worker's user went with its teardown


@pytest.mark.parametrize("restarted", [False, True], ids=["connection closed", "server restarted"])
def test_a_lease_whose_holder_left_the_server_is_taken_over_at_once_from_any_host(
    redis_server_factory: Callable[..., Server], restarted: bool
) -> None:
    server = redis_server_factory("--databases", "3")
    holder = server.client(single_connection_client=True)
    run_id = holder.info("server")["run_id"]
    # A holder on another host: its pid says nothing here, its connection does.
    owner = {"host": "elsewhere", "pid": 1, "started": 0.0, "token": "t",
             "client": holder.client_id(), "server": "0" * 40 if restarted else run_id}  # fmt: skip
    holder.set("worker_utils:lease:1", json.dumps(owner))
    try:
        if not restarted:
            with pytest.raises(RedisSetupError, match="no free database"):
                claim_only_database(server, wait=0.3)
    finally:
        holder.close()
    lease = claim_only_database(server, wait=5)
    try:
        assert lease.db == 1
        assert lease.waited == 0.0
    finally:
        lease.release()
    assert server.keys_by_db() == {}


@pytest.mark.skipif(
    not os.environ.get("WORKER_UTILS_REDIS_SOAK"),
    reason="a long soak; set WORKER_UTILS_REDIS_SOAK=1 to run it",
)
def test_a_lease_outlives_a_ninety_second_pause_beside_a_concurrent_run(
    redis_server_factory: Callable[..., Server], tmp_path: Path
) -> None:
    server = redis_server_factory("--databases", "4")  # leasable: 1 and 2
    child, _ = hold_in_child(server, ttl=30)
    try:
        with stopped(child):
            started = time.monotonic()
            others = [
                lease_redis(parse_redis_url(server.url), wait=0, env=env(f"gw{n}"),
                            notify=lambda _: None)
                for n in range(3)
            ]  # fmt: skip
            try:
                while time.monotonic() - started < 90:
                    # The concurrent run keeps asking for a database all along.
                    with contextlib.suppress(RedisSetupError):
                        claim_only_database(server, wait=0).release()
                    assert [o.db for o in others if o.mode == "index"] == [2]
                    time.sleep(5)
            finally:
                for other in others:
                    other.release()
    finally:
        stop(child)
    assert server.keys_by_db() == {}


def test_what_a_dead_prefix_mode_worker_left_is_removed_by_the_reaper(redis_server: Server) -> None:
    lease = lease_redis(parse_redis_url(redis_server.url), mode="prefix", env=env("gw0"))
    try:
        lease.client().set(lease.prefix + "k", 1)
        with redis_server.client() as admin:
            assert admin.acl_users() == sorted(["default", lease.acl_user])
        release_abandoned(lease.abandon_record())  # as if the worker had died
        assert redis_server.keys_by_db() == {}
        with redis_server.client() as admin:
            assert admin.acl_users() == ["default"]
    finally:
        lease.release()
