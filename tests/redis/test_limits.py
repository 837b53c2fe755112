"""More workers than databases: waiting, prefix mode, and the strict failure."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.redis.conftest import Example, Server
from tests.redis.test_pollution import assert_one_owner_per_database
from worker_utils.redis import lease_redis, parse_redis_url

Records = Callable[[], list[dict[str, Any]]]


def run_concurrently(
    example: Example, server: Server, tmp_path: Path, suite: str, runs: int, workers: int
) -> list[str]:
    """Start ``runs`` inner runs of ``suite`` at once on ``server``; return their outputs."""
    started = []
    for n in range(runs):
        directory = tmp_path / f"run{n}"
        example.copy(suite, directory)
        started.append(
            example.popen(directory, "-n", str(workers), env={"WORKER_UTILS_REDIS_URL": server.url})
        )
    outputs = []
    for run in started:
        output = run.communicate(timeout=600)[0]
        assert run.returncode == 0, output
        outputs.append(output)
    return outputs


# Two concurrent runs (test_pollution.py) and a run with more workers than databases
# (below) stay in the default suite; nine at once is the soak.
@pytest.mark.skipif(
    not os.environ.get("WORKER_UTILS_REDIS_SOAK"),
    reason="a long soak; set WORKER_UTILS_REDIS_SOAK=1 to run it",
)
def test_nine_concurrent_runs_of_two_workers_share_sixteen_databases_without_overlap(
    example: Example, redis_server: Server, tmp_path: Path, read_records: Records
) -> None:
    for output in run_concurrently(example, redis_server, tmp_path, "tiny", runs=9, workers=2):
        assert "2 passed" in output
    records = read_records()
    assert len({r["run"] for r in records}) == 9
    assert all(1 <= r["db"] < 16 for r in records if r["mode"] == "index")
    assert_one_owner_per_database(records)
    assert redis_server.keys_by_db() == {}


def test_a_run_with_more_workers_than_databases_falls_back_to_key_prefixes(
    example: Example,
    redis_server_factory: Callable[..., Server],
    read_records: Records,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Two leasable databases (1 and 2) for three workers.
    server = redis_server_factory("--databases", "4")
    monkeypatch.setenv("WORKER_UTILS_REDIS_WAIT", "1")
    monkeypatch.setenv("WU_TEST_HOLD_UNTIL_PREFIXED", "1")
    example.copy("pollution")
    example.copy("tiny")
    result = example.pytester.runpytest_subprocess(
        "-n", "3", "--dist=each", "-p", "no:cacheprovider", "--worker-utils-summary=short",
        f"--worker-utils-redis-url={server.url}",
    )  # fmt: skip
    result.assert_outcomes(passed=3 * 17)
    modes = {(r["worker"], r["mode"], r["db"]) for r in read_records()}
    assert {m[1:] for m in modes if m[1] == "index"} == {("index", 1), ("index", 2)}
    prefixed = {m[0] for m in modes if m[1] == "prefix"}
    assert len(prefixed) == 1
    result.stderr.fnmatch_lines(
        [
            f"worker_utils: gw*: no free Redis database on {server.url} (2 leasable, all "
            f"leased or holding other users' keys); waiting up to 1s for one to be released",
            f"worker_utils: gw*: no free Redis database on {server.url} after 1s; "
            f"using key prefix 'wu:*:gw*:' in database 3",
        ]
    )
    result.stdout.fnmatch_lines(["worker_utils: gw*: redis prefix wu:*:gw*: in db 3"])
    assert server.keys_by_db() == {}


def test_strict_index_mode_fails_once_per_worker_with_a_clear_message(
    example: Example,
    redis_server_factory: Callable[..., Server],
    record_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = redis_server_factory("--databases", "3")
    other_run = lease_redis(parse_redis_url(server.url), env={"PYTEST_XDIST_WORKER": "gw0"})
    assert other_run.db == 1  # the only database besides the bookkeeping one
    monkeypatch.setenv("WORKER_UTILS_REDIS_WAIT", "0.5")
    example.copy("tiny")
    try:
        result = example.pytester.runpytest_subprocess(
            "-p", "no:cacheprovider", "-n", "2", "--worker-utils-redis-mode=index",
            f"--worker-utils-redis-url={server.url}",
        )  # fmt: skip
    finally:
        other_run.release()
    result.assert_outcomes(errors=2)
    message = (
        f"worker_redis: no free database on {server.url} after 0.5s (1 leasable, all "
        f"leased or holding other users' keys); raise worker_utils_redis_wait, use fewer "
        f"workers, start the server with more --databases, or set worker_utils_redis_mode "
        f"to auto to fall back to a key prefix"
    )
    assert result.stdout.lines.count(message) == 2
    assert "During handling" not in result.stdout.str()


@pytest.mark.skipif(
    not os.environ.get("WORKER_UTILS_REDIS_SOAK"),
    reason="a long soak; set WORKER_UTILS_REDIS_SOAK=1 to run it",
)
def test_a_soak_of_nine_runs_of_four_workers_on_the_pollution_suite(
    example: Example, redis_server: Server, tmp_path: Path, read_records: Records
) -> None:
    for output in run_concurrently(example, redis_server, tmp_path, "pollution", runs=9, workers=4):
        assert "15 passed" in output
    records = read_records()
    assert len(records) == 9 * 15
    assert_one_owner_per_database(records)
    assert redis_server.keys_by_db() == {}
