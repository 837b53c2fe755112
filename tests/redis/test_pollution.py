"""The pollution suite under every worker count, in random order, alone and with company."""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import redis

from tests.conftest import BOTH_RUNS_STARTED
from tests.redis.conftest import Example, Server
from worker_utils.redis import _prefix_database, lease_redis, parse_redis_url, redis_url_with_db

Records = Callable[[], list[dict[str, Any]]]


def assert_one_owner_per_database(records: list[dict[str, Any]]) -> None:
    """No database was used by two workers whose sessions overlapped in time."""
    spans: dict[tuple[int, str, str], list[float]] = {}
    for r in records:
        if r["mode"] != "index":
            continue
        span = spans.setdefault((r["db"], r["run"], r["worker"]), [r["time"], r["time"]])
        span[0], span[1] = min(span[0], r["time"]), max(span[1], r["time"])
    by_db: dict[int, list[list[float]]] = {}
    for (db, _, _), span in spans.items():
        by_db.setdefault(db, []).append(span)
    for db, db_spans in by_db.items():
        db_spans.sort()
        for before, after in itertools.pairwise(db_spans):
            assert before[1] < after[0], f"db {db} used by two workers at once"


@pytest.mark.parametrize("workers", ["0", "3"])
def test_the_pollution_suite_passes_in_random_order_with_any_worker_count(
    example: Example, redis_server: Server, record_dir: Any, read_records: Records, workers: str
) -> None:
    example.copy("pollution")
    result = example.pytester.runpytest(
        "-n", workers, "-p", "randomly", "-p", "no:cacheprovider",
        f"--worker-utils-redis-url={redis_server.url}",
    )  # fmt: skip
    result.assert_outcomes(passed=15)
    records = read_records()
    assert len(records) == 15
    workers_seen = {(r["worker"], r["db"]) for r in records}
    dbs = [db for _, db in workers_seen]
    assert len(dbs) == len(set(dbs)) == (1 if workers == "0" else int(workers))
    assert {r["via"] for r in records} == {"fixture", "application", "pubsub"}
    assert {r["mode"] for r in records} == {"index"}
    assert redis_server.keys_by_db() == {}


def test_two_concurrent_runs_share_no_database_and_leave_no_keys(
    example: Example,
    redis_server: Server,
    tmp_path: Any,
    read_records: Records,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("one", "two"):
        example.copy("pollution", tmp_path / name)
        (tmp_path / name / "conftest.py").write_text(
            BOTH_RUNS_STARTED.format(str(tmp_path / "started"))
        )
    # One run in a process of its own, the other meanwhile in this one.
    other = example.popen(
        tmp_path / "one", "-n", "2", env={"WORKER_UTILS_REDIS_URL": redis_server.url}
    )
    try:
        monkeypatch.setenv("WORKER_UTILS_REDIS_URL", redis_server.url)
        monkeypatch.chdir(tmp_path / "two")
        example.pytester.runpytest("-n", "2", "-p", "no:cacheprovider").assert_outcomes(passed=15)
    finally:
        output = other.communicate(timeout=120)[0]
    assert other.returncode == 0, output
    assert "15 passed" in output
    records = read_records()
    assert len(records) == 30
    owners = {(r["run"], r["worker"]): r["db"] for r in records}
    assert len({run for run, _ in owners}) == 2
    assert len(owners) == 4
    spans = [[r["time"] for r in records if r["run"] == run] for run in {run for run, _ in owners}]
    assert max(min(span) for span in spans) < min(max(span) for span in spans), "no overlap"
    assert all(1 <= db < 16 for db in owners.values())
    assert_one_owner_per_database(records)
    assert redis_server.keys_by_db() == {}


def test_keys_someone_else_keeps_in_databases_1_to_5_survive_the_run(
    example: Example, redis_server: Server, read_records: Records
) -> None:
    for db in range(1, 6):
        with redis_server.client(db) as other:
            other.set("counter", f"theirs {db}")
            other.rpush("queue", "a", "b")
    example.copy("pollution")
    result = example.pytester.runpytest(
        "-n", "2", "-p", "no:cacheprovider", f"--worker-utils-redis-url={redis_server.url}"
    )
    result.assert_outcomes(passed=15)
    assert {r["db"] for r in read_records()} == {6, 7}
    assert redis_server.keys_by_db() == {db: [b"counter", b"queue"] for db in range(1, 6)}
    for db in range(1, 6):
        with redis_server.client(db) as other:
            assert other.get("counter") == f"theirs {db}".encode()


def keys_of_someone_else(url: str) -> tuple[dict[int, dict[str, Any]], Callable[[], None]]:
    """Write someone else's keys where a run on the shared server must never reach them.

    In the bookkeeping database, in the prefix database, and, when one is free,
    in a leasable database: leased to make sure no worker is using it, then
    given up without its lease and marker, so that its keys are nobody's
    leftovers. Returns what each database holds of them, and a function that
    removes them.
    """
    tag = f"someone-else:{uuid.uuid4().hex}:"
    server = parse_redis_url(url)
    lease = lease_redis(
        server,
        wait=0,
        env={"PYTEST_XDIST_WORKER": "gw0", "WORKER_UTILS_TESTRUN_UID": tag.replace(":", "-")},
        notify=lambda _: None,
    )
    dbs = [server.db, _prefix_database(lease.database_count, server.db)]
    if lease.mode == "index":  # else every leasable database is in use: none to keep keys in
        dbs.append(lease.db)
    for db in dbs:
        with redis.Redis.from_url(redis_url_with_db(url, db)) as other:
            other.set(tag + "counter", f"theirs {db}")
            other.rpush(tag + "queue", "a", "b")
    with redis.Redis.from_url(url) as bookkeeping:
        bookkeeping.delete(f"worker_utils:lease:{lease.db}", f"worker_utils:dirty:{lease.db}")
    lease.release()  # its lease gone, it empties nothing: the keys are someone else's now
    kept = {db: {tag + "counter": f"theirs {db}".encode(), tag + "queue": [b"a", b"b"]}
            for db in dbs}  # fmt: skip

    def remove() -> None:
        for db in dbs:
            with redis.Redis.from_url(redis_url_with_db(url, db)) as other:
                other.delete(tag + "counter", tag + "queue")

    return kept, remove


def read_keys(url: str, kept: dict[int, dict[str, Any]]) -> dict[int, dict[str, Any]]:
    found = {}
    for db, keys in kept.items():
        with redis.Redis.from_url(redis_url_with_db(url, db)) as other:
            counter, queue = sorted(keys)
            found[db] = {counter: other.get(counter), queue: other.lrange(queue, 0, -1)}
    return found


def test_the_pollution_suite_passes_on_the_machines_shared_server_without_touching_others(
    example: Example, read_records: Records
) -> None:
    url = os.environ.get("WU_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")  # noqa: WU202
    kept, remove = keys_of_someone_else(url)
    try:
        assert read_keys(url, kept) == kept
        example.copy("pollution")
        result = example.pytester.runpytest(
            "-n", "2", "-p", "no:cacheprovider", f"--worker-utils-redis-url={url}"
        )
        result.assert_outcomes(passed=15)
        records = read_records()
        assert_one_owner_per_database(records)
        # The run never leased the database that holds someone else's keys, and left them all.
        assert not {r["db"] for r in records if r["mode"] == "index"} & set(kept)
        assert read_keys(url, kept) == kept
    finally:
        remove()
