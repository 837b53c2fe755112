"""What a test cannot do to others: wipe their keys, leases or databases from prefix mode."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.redis.conftest import Example, Server


def wait_for(directory: Path, pattern: str, count: int) -> list[Path]:
    deadline = time.monotonic() + 60
    while len(found := sorted(directory.glob(pattern))) < count:
        assert time.monotonic() < deadline, f"waited for {count} {pattern}"
        time.sleep(0.05)
    return found


def test_flushes_in_prefix_mode_leave_every_other_workers_runs_and_users_keys(
    example: Example, redis_server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    signals = tmp_path / "signals"
    signals.mkdir()
    env = {"WORKER_UTILS_REDIS_URL": redis_server.url, "WU_TEST_SIGNALS": str(signals)}
    example.copy("holder", tmp_path / "holder")
    example.copy("flusher", tmp_path / "flusher")
    holder = example.popen(tmp_path / "holder", "-n", "2", "--dist=each", env=env)
    try:
        held = {int(f.read_text()) for f in wait_for(signals, "holder-ready-*", 2)}
        users = [db for db in range(16) if db not in held]
        for db in users:
            with redis_server.client(db) as user:
                user.set("user-key", f"theirs {db}")
        # The holder waits in a process of its own, the flusher runs meanwhile in this one.
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        monkeypatch.chdir(tmp_path / "flusher")
        example.pytester.runpytest(
            "-n", "2", "--dist=each", "--worker-utils-redis-mode=prefix", "-p", "no:cacheprovider"
        ).assert_outcomes(passed=2)
        leases = redis_server.keys_by_db()[0]
        assert {f"worker_utils:lease:{db}".encode() for db in held} <= set(leases)
    finally:
        (signals / "go").touch()
        output = holder.communicate(timeout=120)[0]
    assert holder.returncode == 0, output
    assert redis_server.keys_by_db() == {db: [b"user-key"] for db in users}
    for db in users:
        with redis_server.client(db) as user:
            assert user.get("user-key") == f"theirs {db}".encode()
    with redis_server.client() as admin:
        assert admin.acl_users() == ["default"]


# Two workers show the notice comes once per run; the other refusal, once per run of one.
@pytest.mark.parametrize(
    ("server_args", "user", "refusal", "workers"),
    [
        (("--rename-command", "ACL", ""), "", "unknown command 'ACL'", 2),
        (
            (),
            "limited:secret@",
            "this user has no permissions to run the 'acl|setuser' command",
            0,
        ),
    ],
    ids=["acl-renamed", "user-without-acl"],
)
@pytest.mark.usefixtures("record_dir")
def test_a_server_that_refuses_a_redis_user_gets_one_notice_per_run(
    example: Example,
    redis_server_factory: Callable[..., Server],
    server_args: tuple[str, ...],
    user: str,
    refusal: str,
    workers: int,
) -> None:
    server = redis_server_factory(*server_args)
    if user:
        with server.client() as admin:
            admin.execute_command("ACL", "SETUSER", "limited", "on", ">secret", "~*", "&*",
                                  "+@all", "-acl")  # fmt: skip
    url = f"redis://{user}127.0.0.1:{server.port}/0"
    shown = url.replace(":secret@", ":***@")
    example.copy("tiny")
    # A worker writes the notice to its stderr, which only a run in a process of its own
    # captures as the run's.
    run = example.pytester.runpytest_subprocess if workers else example.pytester.runpytest
    result = run("-n", str(workers), "-p", "no:cacheprovider", f"--worker-utils-redis-url={url}")
    result.assert_outcomes(passed=2)
    notice = (
        f"worker_utils: {shown} refused a Redis user per worker ({refusal}); tests connect "
        f"as the user of --worker-utils-redis-url, so FLUSHALL, SWAPDB, CLIENT KILL, CONFIG "
        f"SET or SHUTDOWN in a test reaches every worker and run (allow that user ACL "
        f"SETUSER to contain them)"
    )
    result.stderr.fnmatch_lines([notice])
    assert len([line for line in result.stderr.lines if "refused a Redis user" in line]) == 1
    assert server.keys_by_db(password=None) == {}
