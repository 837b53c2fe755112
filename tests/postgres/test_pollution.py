"""The pollution suite under every worker count, in random order, alone and with company."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import BOTH_RUNS_STARTED
from tests.postgres.conftest import Example, execute, schemas

Records = Callable[[], list[dict[str, Any]]]
TESTS = 18


# Without workers, and with more than two: each worker count beyond one proves the same.
@pytest.mark.parametrize("workers", ["0", "3"])
def test_the_pollution_suite_passes_in_random_order_with_any_worker_count(
    example: Example, read_records: Records, workers: str
) -> None:
    example.copy("pollution")
    result = example.pytester.runpytest("-n", workers, "-p", "randomly", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=TESTS)
    records = read_records()
    assert len(records) == TESTS
    assert {r["via"] for r in records} == {"fixture", "application", "truncate", "both"}
    owners = {r["worker"]: r["schema"] for r in records}
    assert len({r["schema"] for r in records}) == len(owners)
    assert all(s.startswith(f"{example.prefix}_") for s in owners.values())
    assert len(owners) == (1 if workers == "0" else int(workers))
    assert schemas(example.prefix) == []


def test_two_concurrent_runs_share_no_schema_and_leave_only_a_users_schema_behind(
    example: Example, tmp_path: Path, read_records: Records, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A schema of the user's, named as the classic per-worker helper names gw0's schema:
    # both runs have a gw0, and neither may take or drop it.
    user_schema = f"{example.prefix}_gw0"
    execute(f"CREATE SCHEMA {user_schema}; CREATE TABLE {user_schema}.keep (id int)")
    execute(f"INSERT INTO {user_schema}.keep VALUES (1)")
    try:
        for name in ("one", "two"):
            example.copy("pollution", tmp_path / name)
            conftest = BOTH_RUNS_STARTED.format(str(tmp_path / "started"))
            (tmp_path / name / "conftest.py").write_text(conftest)
        # One run in a process of its own, the other meanwhile in this one.
        other = example.popen(tmp_path / "one", "-n", "2")
        try:
            monkeypatch.chdir(tmp_path / "two")
            result = example.pytester.runpytest("-n", "2", "-p", "no:cacheprovider")
            result.assert_outcomes(passed=TESTS)
        finally:
            output = other.communicate(timeout=120)[0]
        assert other.returncode == 0, output
        assert f"{TESTS} passed" in output
        records = read_records()
        owners = {(r["run"], r["worker"]): r["schema"] for r in records}
        assert len({run for run, _ in owners}) == 2
        assert len(set(owners.values())) == len(owners) == 4
        assert user_schema not in owners.values()
        assert schemas(example.prefix) == [user_schema]
    finally:
        execute(f"DROP SCHEMA {user_schema} CASCADE")
