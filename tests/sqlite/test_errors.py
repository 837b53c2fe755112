"""Every SQLite error is one line naming what to change."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from worker_utils import sqlite

IN_ORDER = ("-p", "no:randomly", "-p", "no:xdist")


def test_a_pragma_value_cannot_smuggle_a_statement() -> None:
    with pytest.raises(ValueError) as excinfo:
        sqlite.parse_pragmas("foreign_keys=ON;DROP")
    assert str(excinfo.value) == "'foreign_keys=ON;DROP' is not name=value"


def test_pragmas_may_be_separated_by_commas_or_spaces() -> None:
    assert sqlite.parse_pragmas("journal_mode=wal, busy_timeout=100  cache_size=-2000") == (
        ("journal_mode", "wal"),
        ("busy_timeout", "100"),
        ("cache_size", "-2000"),
    )


def test_a_setup_that_fails_in_sqlite_fails_each_test_on_one_line(
    pytester: pytest.Pytester, example: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WU_TEST_BAD_SETUP", "1")
    example("errors")
    result = pytester.runpytest(*IN_ORDER)
    result.assert_outcomes(errors=2)
    message = "worker_sqlite_setup: the setup failed on the template: no such table: nowhere"
    result.stdout.fnmatch_lines([message] * 2)
    result.stdout.no_fnmatch_line("*Traceback*")


def test_a_connection_left_holding_a_write_lock_fails_the_test_that_left_it(
    pytester: pytest.Pytester, example: Callable[..., Path]
) -> None:
    example("errors", "worker_utils_sqlite_pragmas = journal_mode=WAL busy_timeout=50\n")
    result = pytester.runpytest(*IN_ORDER)
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_leaves_a_transaction_open*",
            "worker_sqlite: could not restore */sqlite.db: a connection the test opened "
            "still holds a write transaction; commit or close it before the test ends",
        ]
    )
