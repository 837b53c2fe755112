"""The framework examples: each runs at -n 2, twice at once against one server, leaving nothing."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import psutil
import psycopg
import pytest
import redis

from tests.conftest import BOTH_RUNS_STARTED
from worker_utils.run import coordination

EXAMPLES = Path(__file__).parents[1] / "examples"
POSTGRES = os.environ.get(
    "WU_TEST_POSTGRES_URL",
    "postgresql://postgres@127.0.0.1:5432/test",  # noqa: WU202 the machine's server
)
REDIS = os.environ.get("WU_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")  # noqa: WU202,WU602
#: The example applications, each a suite of its own; the docs include their files.
APPS = ["django_app", "sqlalchemy_app", "rq_app", "async_app"]
#: Keys the examples' applications write: none may be left in any database.
APP_KEYS = ("rq:*", "hits:*")


def _left_in_postgres(tags: list[str]) -> list[str]:
    with psycopg.connect(POSTGRES) as conn:
        rows = conn.execute(
            "SELECT nspname FROM pg_namespace UNION ALL SELECT datname FROM pg_database"
        ).fetchall()
    return [name for (name,) in rows if any(tag in name for tag in tags)]


def _left_in_redis(uids: list[str]) -> list[str]:
    client = redis.Redis.from_url(REDIS)
    left = []
    try:
        databases = int(client.config_get("databases")["databases"])
        for db in range(databases):
            client.execute_command("SELECT", db)
            for pattern in (*APP_KEYS, "worker_utils:*"):
                for key in client.scan_iter(match=pattern):
                    value = client.get(key) if client.type(key) == b"string" else b""
                    if not key.startswith(b"worker_utils:") or any(
                        uid.encode() in (value or b"") for uid in uids
                    ):
                        left.append(f"db {db}: {key.decode()}")
    finally:
        client.close()
    return left


def _start(example: str, *args: str) -> subprocess.Popen[str]:
    """Start a run of ``example`` in a process of its own."""
    return subprocess.Popen(
        [sys.executable, "-m", "pytest", *args],
        cwd=EXAMPLES / example,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _assert_passed(run: subprocess.Popen[str]) -> None:
    output = run.communicate(timeout=300)[0]
    assert run.returncode == 0, output
    assert " passed" in output.splitlines()[-1], output


class _ControllerWaits:
    """The barrier's half for a run in this process, whose workers take their ``sys.path``
    from xdist's copy of this process's and cannot import it: the controller checks each
    worker in as it comes up, and hands out no test before the other run's two have too."""

    def __init__(self, started: Path) -> None:
        self.started = started
        self.ready = 0

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodeready(self, node: Any) -> None:
        self.started.mkdir(exist_ok=True)
        (self.started / f"in-process-{node.gateway.id}").touch()
        self.ready += 1
        deadline = time.monotonic() + 60
        while self.ready == 2 and len(list(self.started.iterdir())) < 4:
            assert time.monotonic() < deadline, "the other run's workers never started"
            time.sleep(0.05)


@pytest.mark.parametrize("example", APPS)
def test_the_example_passes_at_n_2_twice_at_once_and_leaves_nothing(
    example: str, pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    uids = [f"ex-{example.partition('_')[0]}-{uuid.uuid4().hex[:8]}" for _ in range(2)]
    monkeypatch.setenv("WORKER_UTILS_POSTGRES_URL", POSTGRES)
    monkeypatch.setenv("WORKER_UTILS_REDIS_URL", REDIS)
    for name in ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "PYTEST_XDIST_TESTRUNUID"):
        monkeypatch.delenv(name, raising=False)  # each is a run of its own, as in CI
    # Every worker of both runs waits for the other three: the runs surely overlap.
    started = tmp_path / "started"
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    (barrier / "both_runs_started.py").write_text(BOTH_RUNS_STARTED.format(str(started)))
    paths = [str(barrier), *filter(None, [os.environ.get("PYTHONPATH")])]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(paths))
    args = ["-n", "2", "-p", "no:randomly", "-p", "no:cacheprovider"]
    # One run in a process of its own, the other meanwhile in this one; but Django's
    # controller configures Django's settings, which stay configured in a process.
    other = _start(example, *args, "-p", "both_runs_started", f"--testrunuid={uids[0]}")
    try:
        if example == "django_app":
            _assert_passed(
                _start(example, *args, "-p", "both_runs_started", f"--testrunuid={uids[1]}")
            )
        else:
            monkeypatch.chdir(EXAMPLES / example)
            result = pytester.runpytest(
                *args, f"--testrunuid={uids[1]}", plugins=[_ControllerWaits(started)]
            )
            assert result.ret == 0, result.stdout.str()
            assert result.parseoutcomes()["passed"] > 0
    finally:
        _assert_passed(other)
    tags = [uid.replace("-", "_") for uid in uids]
    assert _left_in_postgres(tags) == []
    assert _left_in_redis(uids) == []
    assert [
        path.name
        for path in coordination.tmp_root().glob("run-ex-*")
        if any(uid in path.name for uid in uids)
    ] == []
    assert [
        process.info["cmdline"]
        for process in psutil.process_iter(["cmdline"])
        if any(uid in " ".join(process.info["cmdline"] or ()) for uid in uids)
    ] == []
