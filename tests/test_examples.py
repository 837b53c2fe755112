"""The framework examples: each runs at -n 2, twice at once against one server, leaving nothing."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import psutil
import psycopg
import pytest
import redis

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


@pytest.mark.parametrize("example", APPS)
def test_the_example_passes_at_n_2_twice_at_once_and_leaves_nothing(example: str) -> None:
    uids = [f"ex-{example.partition('_')[0]}-{uuid.uuid4().hex[:8]}" for _ in range(2)]
    env = {
        **os.environ,
        "WORKER_UTILS_POSTGRES_URL": POSTGRES,
        "WORKER_UTILS_REDIS_URL": REDIS,
    }
    for name in ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "PYTEST_XDIST_TESTRUNUID"):
        env.pop(name, None)  # each is a run of its own, as in CI
    runs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pytest",
                "-n",
                "2",
                "-p",
                "no:randomly",
                "-p",
                "no:cacheprovider",
                f"--testrunuid={uid}",
            ],
            cwd=EXAMPLES / example,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for uid in uids
    ]
    outputs = [run.communicate(timeout=300)[0] for run in runs]
    for run, output in zip(runs, outputs, strict=True):
        assert run.returncode == 0, output
        assert " passed" in output.splitlines()[-1], output
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
