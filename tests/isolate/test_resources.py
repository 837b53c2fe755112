"""An isolated test uses its worker's resources: made once, by the worker, and reset once."""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import psycopg
import pytest
import redis

from tests.isolate.conftest import EXAMPLES
from worker_utils.redis import LEASE_KEY_PREFIX

POSTGRES = os.environ.get(
    "WU_TEST_POSTGRES_URL",
    "postgresql://postgres@127.0.0.1:5432/test",  # noqa: WU202 the machine's server
)
REDIS = os.environ.get("WU_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")  # noqa: WU202,WU602


def _left_behind(prefix: str, uid: str, directory: Path) -> dict[str, list[str]]:
    """What the run left on the servers and in processes: its schemas, leases, users, processes."""
    with psycopg.connect(POSTGRES) as conn:
        schemas = conn.execute(
            "SELECT nspname FROM pg_namespace WHERE starts_with(nspname, %s)", [prefix]
        ).fetchall()
    with redis.Redis.from_url(REDIS) as server:
        leases = [
            key.decode()
            for key in server.scan_iter(f"{LEASE_KEY_PREFIX}*")
            if uid in (server.get(key) or b"").decode()
        ]
        users = [user for user in server.acl_users() if uid[:10] in user]
    processes = []
    for process in psutil.process_iter(["cwd", "cmdline"]):
        if process.info["cwd"] == str(directory) and process.pid != os.getpid():
            processes.append(" ".join(process.info["cmdline"] or []))
    return {
        "schemas": [row[0] for row in schemas],
        "leases": leases,
        "users": users,
        "processes": processes,
    }


def test_an_isolated_test_uses_its_workers_resources_made_once_and_reset_once(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    read_records: Callable[[], list[dict[str, Any]]],
) -> None:
    shutil.copytree(EXAMPLES / "resources", pytester.path, dirs_exist_ok=True)
    prefix, uid = f"wu_iso_{uuid.uuid4().hex[:6]}", uuid.uuid4().hex
    monkeypatch.setenv("WORKER_UTILS_POSTGRES_URL", POSTGRES)
    monkeypatch.setenv("WORKER_UTILS_REDIS_URL", REDIS)
    result = pytester.runpytest_subprocess(
        "-p", "no:randomly", "-n", "2", "--dist", "loadfile", "--testrunuid", uid,
        "--worker-utils-postgres-prefix", prefix,
    )  # fmt: skip
    result.assert_outcomes(passed=10, warnings=1)
    # The worker's reset after the isolated test found the extension: the test's warning.
    result.stdout.fnmatch_lines(
        [
            "*test_first_worker.py::test_6_isolated_makes_an_extension",
            "*WorkerUtilsPostgresWarning: worker_postgres: test_first_worker.py::"
            f"test_6_isolated_makes_an_extension created extension 'isn' in schema {prefix}_*_gw*, "
            "which other workers do not see and which goes with it; add isn to "
            "worker_utils_postgres_extensions to create it once for every worker",
        ]
    )
    by_worker: dict[str, list[dict[str, Any]]] = {}
    for record in sorted(read_records(), key=lambda record: record["label"][-1]):
        by_worker.setdefault(record["worker"], []).append(record)
    assert sorted(by_worker) == ["gw0", "gw1"]
    shared = ("schema", "redis", "port", "tmp", "sqlite")
    for records in by_worker.values():
        worker = {record["pid"] for record in records if "in process" in record["label"]}
        isolated = {record["pid"] for record in records if "isolated" in record["label"]}
        assert (len(worker), len(isolated), worker & isolated) == (1, 2, set())
        # The same namespace, Redis database, port, directory and SQLite file, made by the worker.
        assert len({tuple(json.dumps(record[key]) for key in shared) for record in records}) == 1
        assert {record["schema_owner"] for record in records} == worker
        assert {record["redis_owner"] for record in records} <= worker | {None}  # None: prefix
        # Each test finds nothing of the one before, which was undone once.
        assert [(record["rows"], record["keys"]) for record in records] == [([], [])] * len(records)
        assert [record["resets"] for record in records] == list(range(len(records)))
    assert _left_behind(prefix, uid, pytester.path) == {
        "schemas": [],
        "leases": [],
        "users": [],
        "processes": [],
    }
