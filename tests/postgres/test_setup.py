"""The run-wide setup point: once per run through a template, or per worker when it must."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.postgres.conftest import Example, databases, schemas

Records = Callable[[], list[dict[str, Any]]]


def test_the_setup_runs_once_per_run_and_every_worker_gets_a_copy(
    example: Example, read_records: Records
) -> None:
    example.copy("setup_once")
    result = example.pytester.runpytest("-n", "2", "-p", "no:randomly")
    result.assert_outcomes(passed=9)
    records = read_records()
    assert len([r for r in records if "setup" in r]) == 1
    assert len({r["schema"] for r in records if "schema" in r}) == 2
    assert schemas(example.prefix) == []


def test_a_setup_that_makes_a_function_runs_in_every_worker_instead(
    example: Example, read_records: Records, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WU_TEST_FUNCTION", "1")
    example.copy("setup_once")
    result = example.pytester.runpytest("-n", "2", "-p", "no:randomly", "-v")
    result.assert_outcomes(passed=9)
    result.stdout.fnmatch_lines(
        ["worker_utils: gw0: postgres *_gw0; postgres setup per worker: it holds function answer"]
    )
    # Once for the template, then once in each worker.
    assert len([r for r in read_records() if "setup" in r]) == 3
    assert schemas(example.prefix) == []


@pytest.mark.parametrize("workers", ["0", "2"])
def test_database_mode_gives_each_worker_a_copy_of_the_template_database(
    example: Example, read_records: Records, workers: str
) -> None:
    example.copy("setup_once", ini="worker_utils_postgres_mode = database\n")
    result = example.pytester.runpytest("-n", workers, "-p", "no:randomly")
    result.assert_outcomes(passed=9)
    records = read_records()
    assert len([r for r in records if "setup" in r]) == 1
    assert {r["schema"] for r in records if "schema" in r} == {"public"}
    assert databases(example.prefix) == []


@pytest.mark.parametrize("workers", ["0", "2"])
def test_the_async_twin_rolls_back_and_cleans_up_after_a_commit(
    example: Example, workers: str
) -> None:
    example.copy("async_app")
    result = example.pytester.runpytest("-n", workers, "-p", "no:randomly")
    result.assert_outcomes(passed=5)
