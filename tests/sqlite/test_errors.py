"""Every SQLite error is one line naming what to change."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from worker_utils import sqlite

PRAGMAS_HELP = "expected name=value pairs such as 'journal_mode=WAL foreign_keys=ON'"
IN_ORDER = ("-p", "no:randomly", "-p", "no:xdist")


@pytest.mark.parametrize(
    ("args", "ini", "env", "setting"),
    [
        ([], "worker_utils_sqlite_pragmas = journal_mode", "", "worker_utils_sqlite_pragmas"),
        ([], "", "journal_mode", "WORKER_UTILS_SQLITE_PRAGMAS"),
    ],
)
def test_malformed_pragmas_stop_the_run_naming_the_setting(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    ini: str,
    env: str,
    setting: str,
) -> None:
    pytester.makeini(f"[pytest]\n{ini}")
    if env:
        monkeypatch.setenv("WORKER_UTILS_SQLITE_PRAGMAS", env)
    result = pytester.runpytest_subprocess(*args, *IN_ORDER)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: {setting}: found 'journal_mode'; {PRAGMAS_HELP}"])


def test_a_pragma_value_cannot_smuggle_a_statement() -> None:
    with pytest.raises(ValueError) as excinfo:
        sqlite.parse_pragmas("foreign_keys=ON;DROP", setting="worker_utils_sqlite_pragmas")
    assert (
        str(excinfo.value)
        == f"worker_utils_sqlite_pragmas: found 'foreign_keys=ON;DROP'; {PRAGMAS_HELP}"
    )


def test_pragmas_may_be_separated_by_commas_or_spaces() -> None:
    assert sqlite.parse_pragmas(
        "journal_mode=wal, busy_timeout=100  cache_size=-2000", setting="x"
    ) == (
        ("journal_mode", "wal"),
        ("busy_timeout", "100"),
        ("cache_size", "-2000"),
    )


@pytest.mark.parametrize(
    ("ini", "env", "setting"),
    [("worker_utils_sqlite_reset = rollback", "", "worker_utils_sqlite_reset")],
)
def test_an_unknown_reset_mode_stops_the_run_naming_the_setting(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, ini: str, env: str, setting: str
) -> None:
    pytester.makeini(f"[pytest]\n{ini}")
    if env:
        monkeypatch.setenv("WORKER_UTILS_SQLITE_RESET", env)
    result = pytester.runpytest_subprocess(*IN_ORDER)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [f"ERROR: {setting}: found 'rollback'; use one of auto, transaction, restore, none"]
    )


def test_a_setup_that_fails_in_sqlite_fails_each_test_on_one_line(
    pytester: pytest.Pytester, example: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WU_TEST_BAD_SETUP", "1")
    example("errors")
    result = pytester.runpytest_subprocess(*IN_ORDER)
    result.assert_outcomes(errors=2)
    message = "worker_sqlite_setup: the setup failed on the template: no such table: nowhere"
    result.stdout.fnmatch_lines([message] * 2)
    result.stdout.no_fnmatch_line("*Traceback*")


def test_a_connection_left_holding_a_write_lock_fails_the_test_that_left_it(
    pytester: pytest.Pytester, example: Callable[..., Path]
) -> None:
    example("errors", "worker_utils_sqlite_pragmas = journal_mode=WAL busy_timeout=50\n")
    result = pytester.runpytest_subprocess(*IN_ORDER)
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_leaves_a_transaction_open*",
            "worker_sqlite: could not restore */sqlite.db: a connection the test opened "
            "still holds a write transaction; commit or close it before the test ends",
        ]
    )
