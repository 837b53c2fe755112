"""``worker-utils reap`` on Redis: what killed runs left goes, what live workers hold stays."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.redis.conftest import Example, Server
from worker_utils import cli, ports
from worker_utils._util import wait_until
from worker_utils.redis import lease_redis, parse_redis_url
from worker_utils.redis import plugin as redis_plugin

# A worker in prefix mode that writes a key and waits to be killed.
PREFIX_HOLDER = """
import sys
from worker_utils.redis import lease_redis, parse_redis_url

lease = lease_redis(parse_redis_url(sys.argv[1]), mode="prefix",
                    env={"PYTEST_XDIST_WORKER": "gw3", "WORKER_UTILS_TESTRUN_UID": "killed-prefix"})
lease.client().set(lease.prefix + "left", 1)
print(lease.acl_user, flush=True)
sys.stdin.readline()
"""


def kill_a_prefix_mode_worker(server: Server) -> str:
    """Start a worker in prefix mode, SIGKILL it once it wrote its key; return its Redis user."""
    child = subprocess.Popen(
        [sys.executable, "-c", PREFIX_HOLDER, server.url],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert child.stdout is not None
    user = child.stdout.readline().strip()
    child.kill()
    child.communicate()
    return user


def wait_until_their_connections_close(server: Server, keys: list[str]) -> None:
    """Redis notices a killed client's closed socket a moment after the kill."""
    with server.client() as bookkeeping:
        clients = [json.loads(bookkeeping.get(key))["client"] for key in keys]

        def closed() -> bool | None:
            listed = [bookkeeping.execute_command("CLIENT", "LIST", "ID", c) for c in clients]
            return not any(listed) or None

        assert wait_until(closed, timeout=10), "the killed workers' connections stay open"


def reap(capsys: pytest.CaptureFixture[str], *args: str) -> list[str]:
    capsys.readouterr()  # what came before: the inner run's output
    assert cli.main(["reap", *args]) == 0
    return capsys.readouterr().out.splitlines()


@pytest.mark.usefixtures("private_tmp_root")  # no other run's reaper frees the killed run first
def test_reap_frees_what_killed_runs_left_and_keeps_what_live_workers_hold(
    example: Example,
    redis_server: Server,
    record_dir: object,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = redis_server.url
    example.copy("crash")
    monkeypatch.setenv("WU_TEST_CRASH", "master")
    killed = example.pytester.runpytest_subprocess(
        "-p", "no:randomly", "-p", "no:cacheprovider", "--testrunuid=killed-run",
        f"--worker-utils-redis-url={url}",
    )  # fmt: skip
    assert killed.ret == -9  # SIGKILL, mid-test: no teardown ran
    prefix_user = kill_a_prefix_mode_worker(redis_server)
    with redis_server.client() as admin:
        (run_user,) = [u for u in admin.acl_users() if u.startswith("worker_utils.killed_run.")]
        prefix_key = next(iter(admin.scan_iter(match="worker_utils:prefix:*"))).decode()
    wait_until_their_connections_close(redis_server, ["worker_utils:lease:1", prefix_key])
    alive = {"PYTEST_XDIST_WORKER": "gw1", "WORKER_UTILS_TESTRUN_UID": "alive"}
    live = lease_redis(parse_redis_url(url), env=alive)
    live_prefix = lease_redis(parse_redis_url(url), mode="prefix", env=alive)
    try:
        live.client().set("mine", 1)
        live_prefix.client().set(live_prefix.prefix + "mine", 1)
        with redis_server.client(5) as other:
            other.set("theirs", 1)  # no lease: never a reaper's business
        before = redis_server.keys_by_db()
        assert before[1] == [b"left"]
        assert before[15] == [b"wu:alive:gw1:mine", b"wu:killed_prefix:gw3:left"]
        monkeypatch.delenv("WORKER_UTILS_POSTGRES_URL", raising=False)
        monkeypatch.setenv("WORKER_UTILS_REDIS_URL", url)  # the plugin's setting
        dry = reap(capsys, "--dry-run")
        assert redis_server.keys_by_db() == before
        done = reap(capsys)
        for lines, (flush, remove) in ((dry, ("would flush", "would remove")),
                                       (done, ("flushed", "removed"))):  # fmt: skip
            assert sorted(lines) == sorted(
                [
                    f"{flush} redis db 1 of run killed-run master: "
                    "its connection to Redis is closed",
                    "kept redis db 2 of run alive gw1: its connection to Redis is open",
                    f"{remove} redis prefix wu:killed_prefix:gw3: in db 15 of run killed-prefix "
                    "gw3: its connection to Redis is closed",
                    "kept redis prefix wu:alive:gw1: in db 15 of run alive gw1: "
                    "its connection to Redis is open",
                    f"{remove} redis user {run_user}: its lease was freed",
                    f"{remove} redis user {prefix_user}: its lease was freed",
                    f"kept redis user {live.acl_user}: its lease is held",
                    f"kept redis user {live_prefix.acl_user}: its lease is held",
                    f"{'would free' if flush == 'would flush' else 'freed'} 2 Redis lease(s) "
                    "and 2 user(s), kept 4",
                ]
            )
        after = redis_server.keys_by_db()
        assert after.pop(2) == [b"mine"]
        assert after.pop(5) == [b"theirs"]
        assert after.pop(15) == [b"wu:alive:gw1:mine"]
        bookkeeping = after.pop(0)
        assert after == {}
        records = [key for key in bookkeeping if not key.startswith(b"worker_utils:prefix:")]
        assert records == [b"worker_utils:dirty:2", b"worker_utils:lease:2"]
        assert len(bookkeeping) == 3  # and the live prefix-mode worker's record
        assert prefix_key.encode() not in bookkeeping
        with redis_server.client() as admin:
            assert sorted(admin.acl_users()) == sorted(
                ["default", live.acl_user, live_prefix.acl_user]
            )
        assert not live.lost
        assert not live_prefix.lost
    finally:
        live.release()
        live_prefix.release()
    assert redis_server.keys_by_db() == {5: [b"theirs"]}


def test_reap_takes_the_redis_url_from_the_plugins_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert redis_plugin.URL.env == "WORKER_UTILS_REDIS_URL"
    monkeypatch.delenv("WORKER_UTILS_POSTGRES_URL", raising=False)
    monkeypatch.setenv("WORKER_UTILS_REDIS_URL", "redis://cache.example/x")
    assert cli.main(["reap"]) == 2
    assert capsys.readouterr().err == (
        "worker-utils reap: WORKER_UTILS_REDIS_URL: found 'redis://cache.example/x' (database "
        "'x' is not a number); expected redis://[[user]:password@]host[:port][/db], "
        "rediss://... or unix:///path/to/socket[?db=N]\n"
    )


def test_reap_on_an_unreachable_redis_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("WORKER_UTILS_POSTGRES_URL", raising=False)
    lease = ports.lease_port()  # a port nothing listens on, for as long as we hold it
    try:
        url = f"redis://127.0.0.1:{lease.port}/0"
        assert cli.main(["reap", "--redis-url", url]) == 2
    finally:
        lease.release()
    assert capsys.readouterr().err == (
        f"worker-utils reap: worker_redis: cannot connect to {url} (Error 111 connecting to "
        f"127.0.0.1:{lease.port}. Connection refused); start Redis there, or set --redis-url "
        f"to a running server\n"
    )


def test_a_redis_it_cannot_reach_does_not_stop_reap_on_postgres(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    postgres_url = "postgresql://postgres@127.0.0.1:5432/test"  # noqa: WU202 the machine's server
    monkeypatch.setenv("WORKER_UTILS_POSTGRES_URL", postgres_url)
    lease = ports.lease_port()  # a port nothing listens on, for as long as we hold it
    try:
        url = f"redis://127.0.0.1:{lease.port}/0"
        assert cli.main(["reap", "--dry-run", "--redis-url", url]) == 2
    finally:
        lease.release()
    out, err = capsys.readouterr()
    assert err.startswith(f"worker-utils reap: worker_redis: cannot connect to {url} ")
    # PostgreSQL was reaped (dry run) all the same.
    assert out.splitlines()[-1].startswith("would drop ")
