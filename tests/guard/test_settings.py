"""The guard's settings from the command line, the environment or the ini file."""

from __future__ import annotations

import pytest

from tests.conftest import PRECEDENCE, SOURCES, Given
from worker_utils.guard.plugin import IGNORE_ENV, MODE

SHOW = """
def test_show(request):
    guard = request.config.pluginmanager.get_plugin("worker_utils.guard")
    print("\\nguard", "off" if guard is None else "strict" if guard.strict else "warn")
    print("\\nguard_ignore_env", guard and list(guard.ignore_env))
"""


@pytest.mark.parametrize("source", SOURCES)
def test_each_setting_is_read_from_every_source(given: Given, source: str) -> None:
    given(MODE, "strict", source)
    given(IGNORE_ENV, "MYAPP_*, OTHER", source)
    lines = given.shown(SHOW)
    assert "guard strict" in lines
    assert "guard_ignore_env ['MYAPP_*', 'OTHER']" in lines


def test_the_option_alone_means_warn(given: Given) -> None:
    assert "guard warn" in given.shown(SHOW, "--worker-utils-guard")


def test_the_ignore_list_may_be_a_toml_list(given: Given) -> None:
    given.pytester.makepyprojecttoml(
        '[tool.pytest.ini_options]\nworker_utils_guard_ignore_env = ["A_*", "B"]\n'
    )
    assert "guard_ignore_env ['A_*', 'B']" in given.shown(SHOW, "--worker-utils-guard")


@pytest.mark.parametrize("sources", PRECEDENCE)
def test_the_option_wins_over_the_variable_which_wins_over_the_ini_file(
    given: Given, sources: tuple[str, ...]
) -> None:
    given(MODE, "warn", "option")
    patterns = {"option": "FROM_OPTION", "env": "FROM_ENV", "ini": "FROM_INI"}
    winner = given.each(IGNORE_ENV, patterns, sources)
    assert f"guard_ignore_env {[winner] if winner else []}" in given.shown(SHOW)


@pytest.mark.parametrize("source", SOURCES)
def test_a_bad_mode_names_the_setting_where_it_came_from_and_what_is_accepted(
    given: Given, source: str
) -> None:
    origin = given(MODE, "loud", source)
    assert given.usage_error() == [
        f"ERROR: worker_utils_guard (from {origin}): found 'loud'; expected off, warn or strict"
    ]


def test_a_test_path_read_as_the_mode_says_how_to_write_the_option(given: Given) -> None:
    assert given.usage_error("--worker-utils-guard", "tests/") == [
        "ERROR: worker_utils_guard (from --worker-utils-guard): found 'tests/' (a test path? "
        "write --worker-utils-guard=MODE, or put the option after the paths); "
        "expected off, warn or strict"
    ]
