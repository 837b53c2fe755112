"""The guard's settings from the command line, the environment or the ini file."""

from __future__ import annotations

import pytest

from tests.conftest import PRECEDENCE, SOURCES, Given
from worker_utils._settings import Setting
from worker_utils.guard.plugin import IGNORE_ENV, MODE

SHOW = """
def test_show(request):
    guard = request.config.pluginmanager.get_plugin("worker_utils.guard")
    print("\\nguard", "off" if guard is None else "strict" if guard.strict else "warn")
    print("\\nguard_ignore_env", guard and list(guard.ignore_env))
"""


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize(
    ("setting", "text", "shown"),
    [
        (MODE, "strict", "guard strict"),
        (IGNORE_ENV, "MYAPP_*, OTHER", "guard_ignore_env ['MYAPP_*', 'OTHER']"),
    ],
    ids=lambda value: value.name if isinstance(value, Setting) else None,
)
def test_each_setting_is_read_from_every_source(
    given: Given, setting: Setting[object], text: str, shown: str, source: str
) -> None:
    if setting is not MODE:
        given(MODE, "warn", "option")
    given(setting, text, source)
    given.pytester.makepyfile(SHOW)
    result = given.run()
    result.assert_outcomes(passed=1)
    assert shown in result.stdout.lines


def test_the_option_alone_means_warn(given: Given) -> None:
    given.pytester.makepyfile(SHOW)
    result = given.run("--worker-utils-guard")
    assert "guard warn" in result.stdout.lines


def test_the_ignore_list_may_be_a_toml_list(given: Given) -> None:
    given.pytester.makepyprojecttoml(
        '[tool.pytest.ini_options]\nworker_utils_guard_ignore_env = ["A_*", "B"]\n'
    )
    given.pytester.makepyfile(SHOW)
    result = given.run("--worker-utils-guard")
    assert "guard_ignore_env ['A_*', 'B']" in result.stdout.lines


@pytest.mark.parametrize("sources", PRECEDENCE)
def test_the_option_wins_over_the_variable_which_wins_over_the_ini_file(
    given: Given, sources: tuple[str, ...]
) -> None:
    given(MODE, "warn", "option")
    for source in sources:
        given(IGNORE_ENV, f"FROM_{source.upper()}", source)
    given.pytester.makepyfile(SHOW)
    result = given.run()
    expected = [f"FROM_{sources[0].upper()}"] if sources else []
    assert f"guard_ignore_env {expected}" in result.stdout.lines


@pytest.mark.parametrize("source", SOURCES)
def test_a_bad_mode_names_the_setting_where_it_came_from_and_what_is_accepted(
    given: Given, source: str
) -> None:
    origin = given(MODE, "loud", source)
    given.pytester.makepyfile("def test_it(): pass")
    result = given.run()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert result.stderr.lines == [
        f"ERROR: worker_utils_guard (from {origin}): found 'loud'; expected off, warn or strict",
        "",
    ]


def test_a_test_path_read_as_the_mode_says_how_to_write_the_option(given: Given) -> None:
    given.pytester.makepyfile("def test_it(): pass")
    result = given.run("--worker-utils-guard", "tests/")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert result.stderr.lines == [
        "ERROR: worker_utils_guard (from --worker-utils-guard): found 'tests/' (a test path? "
        "write --worker-utils-guard=MODE, or put the option after the paths); "
        "expected off, warn or strict",
        "",
    ]
