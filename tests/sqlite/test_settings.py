"""The SQLite settings from the command line, the environment or the ini file."""

from __future__ import annotations

import pytest

from tests.conftest import PRECEDENCE, SOURCES, Given
from worker_utils.sqlite.plugin import PRAGMAS, RESET

SHOW = """
from worker_utils import sqlite
from worker_utils.sqlite.plugin import _reset_key


def test_show(request):
    print("\\npragmas", " ".join(f"{n}={v}" for n, v in sqlite.current_pragmas()))
    print("\\nreset", request.config.stash[_reset_key])
"""


@pytest.mark.parametrize("source", SOURCES)
def test_each_setting_is_read_from_every_source(given: Given, source: str) -> None:
    given(PRAGMAS, "journal_mode=DELETE, busy_timeout=10", source)
    given(RESET, "restore", source)
    lines = given.shown(SHOW)
    assert "pragmas journal_mode=DELETE busy_timeout=10" in lines
    assert "reset restore" in lines


def test_without_settings_the_production_pragmas_and_auto_reset_apply(given: Given) -> None:
    lines = given.shown(SHOW)
    assert "pragmas journal_mode=WAL foreign_keys=ON synchronous=NORMAL busy_timeout=5000" in lines
    assert "reset auto" in lines


@pytest.mark.parametrize("sources", PRECEDENCE)
def test_the_option_wins_over_the_variable_which_wins_over_the_ini_file(
    given: Given, sources: tuple[str, ...]
) -> None:
    modes = {"option": "transaction", "env": "restore", "ini": "none"}
    winner = given.each(RESET, modes, sources)
    assert f"reset {winner or 'auto'}" in given.shown(SHOW)


@pytest.mark.parametrize("source", SOURCES)
def test_malformed_pragmas_stop_the_run_naming_the_setting_and_where_it_came_from(
    given: Given, source: str
) -> None:
    origin = given(PRAGMAS, "journal_mode", source)
    assert given.usage_error() == [
        f"ERROR: worker_utils_sqlite_pragmas (from {origin}): found 'journal_mode' "
        "('journal_mode' is not name=value); expected name=value pairs separated by spaces "
        "or commas, such as 'journal_mode=WAL foreign_keys=ON'"
    ]


@pytest.mark.parametrize("source", SOURCES)
def test_an_unknown_reset_mode_stops_the_run_naming_the_setting(given: Given, source: str) -> None:
    origin = given(RESET, "rollback", source)
    assert given.usage_error() == [
        f"ERROR: worker_utils_sqlite_reset (from {origin}): found 'rollback'; "
        "expected auto, transaction, restore or none"
    ]
