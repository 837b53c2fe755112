"""The settings table: every setting from the command line, the environment or the ini file."""

from __future__ import annotations

import pytest

from tests.conftest import PRECEDENCE, SOURCES, Given, all_settings
from worker_utils.ports.plugin import PORT_RANGE

SHOW = """
from worker_utils.ports.plugin import _range_key

def test_show(request):
    print("\\nport_range", request.config.stash[_range_key])
"""
ACCEPTED = "LOW-HIGH with 1 <= LOW <= HIGH <= 65535, such as 20000-20999"


@pytest.mark.parametrize("source", SOURCES)
def test_the_port_range_is_read_from_every_source(given: Given, source: str) -> None:
    given(PORT_RANGE, "29000-29010", source)
    given.pytester.makepyfile(SHOW)
    result = given.run()
    result.assert_outcomes(passed=1)
    assert "port_range range(29000, 29011)" in result.stdout.lines


@pytest.mark.parametrize("sources", PRECEDENCE)
def test_the_option_wins_over_the_variable_which_wins_over_the_ini_file(
    given: Given, sources: tuple[str, ...]
) -> None:
    ranges = {"option": (29000, 29001), "env": (29002, 29003), "ini": (29004, 29005)}
    for source in sources:
        given(PORT_RANGE, "{}-{}".format(*ranges[source]), source)
    given.pytester.makepyfile(SHOW)
    result = given.run()
    result.assert_outcomes(passed=1)
    if sources:
        low, high = ranges[sources[0]]
        assert f"port_range range({low}, {high + 1})" in result.stdout.lines
    else:
        assert "port_range None" in result.stdout.lines


@pytest.mark.parametrize("source", SOURCES)
def test_a_bad_port_range_names_the_setting_where_it_came_from_and_what_is_accepted(
    given: Given, source: str
) -> None:
    origin = given(PORT_RANGE, "9-x", source)
    given.pytester.makepyfile("def test_it(): pass")
    result = given.run()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert result.stderr.lines[0] == (
        f"ERROR: worker_utils_port_range (from {origin}): found '9-x'; expected {ACCEPTED}"
    )


def test_an_ini_value_given_with_dash_o_is_named_as_such(given: Given) -> None:
    given.pytester.makepyfile("def test_it(): pass")
    result = given.run("-o", "worker_utils_port_range=9-x")
    assert result.stderr.lines[0] == (
        f"ERROR: worker_utils_port_range (from -o): found '9-x'; expected {ACCEPTED}"
    )


def test_an_empty_value_counts_as_not_given(given: Given) -> None:
    given(PORT_RANGE, "", "env")
    given(PORT_RANGE, "29006-29007", "ini")
    given.pytester.makepyfile(SHOW)
    result = given.run()
    assert "port_range range(29006, 29008)" in result.stdout.lines


def test_every_option_and_ini_key_of_the_plugin_comes_from_the_settings_table(
    pytester: pytest.Pytester,
) -> None:
    result = pytester.runpytest("--help")
    # Entries start two spaces in; their descriptions, further in.
    words = [
        line.split()[0]
        for line in result.stdout.lines
        if line.startswith("  ") and not line.startswith("   ")
    ]
    options = {word.split("=")[0] for word in words if word.startswith("--worker-utils")}
    ini_keys = {word for word in words if word.startswith("worker_utils_")}
    settings = all_settings()
    assert options == {setting.option for setting in settings}
    assert ini_keys == {setting.ini for setting in settings}


def test_the_help_names_the_order_of_precedence(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--help")
    result.stdout.fnmatch_lines(
        [
            "worker_utils: per-worker resources "
            "(command line > environment variable > ini file > default):"
        ]
    )
