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
    assert "port_range range(29000, 29011)" in given.shown(SHOW)


@pytest.mark.parametrize("sources", PRECEDENCE)
def test_the_option_wins_over_the_variable_which_wins_over_the_ini_file(
    given: Given, sources: tuple[str, ...]
) -> None:
    texts = {"option": "29000-29001", "env": "29002-29003", "ini": "29004-29005"}
    shown = {
        "29000-29001": "range(29000, 29002)",
        "29002-29003": "range(29002, 29004)",
        "29004-29005": "range(29004, 29006)",
        None: "None",
    }
    winner = given.each(PORT_RANGE, texts, sources)
    assert f"port_range {shown[winner]}" in given.shown(SHOW)


@pytest.mark.parametrize("source", SOURCES)
def test_a_bad_port_range_names_the_setting_where_it_came_from_and_what_is_accepted(
    given: Given, source: str
) -> None:
    origin = given(PORT_RANGE, "9-x", source)
    assert given.usage_error() == [
        f"ERROR: worker_utils_port_range (from {origin}): found '9-x'; expected {ACCEPTED}"
    ]


def test_an_ini_value_given_with_dash_o_is_named_as_such(given: Given) -> None:
    assert given.usage_error("-o", "worker_utils_port_range=9-x") == [
        f"ERROR: worker_utils_port_range (from -o): found '9-x'; expected {ACCEPTED}"
    ]


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        # Read before pytest parses its options (the export's early hook), in every process.
        ("worker_utils_postgres_mode", "schema or database"),
        ("worker_utils_redis_mode", "auto, index or prefix"),
    ],
)
def test_an_early_setting_given_with_dash_o_is_named_as_such(
    given: Given, key: str, expected: str
) -> None:
    given.pytester.makeini("[pytest]\n")  # an ini file that does not hold it
    assert given.usage_error("-o", f"{key}=x") == [
        f"ERROR: {key} (from -o): found 'x'; expected {expected}"
    ]


def test_an_empty_value_counts_as_not_given(given: Given) -> None:
    given(PORT_RANGE, "", "env")
    given(PORT_RANGE, "29006-29007", "ini")
    assert "port_range range(29006, 29008)" in given.shown(SHOW)


def _help_entries(pytester: pytest.Pytester) -> list[str]:
    # Entries start two spaces in; their descriptions, further in.
    lines = pytester.runpytest("--help").stdout.lines
    return [line.split()[0] for line in lines if line.startswith("  ") and line[2] != " "]


def test_every_option_and_ini_key_of_the_plugin_comes_from_the_settings_table(
    pytester: pytest.Pytester,
) -> None:
    entries = _help_entries(pytester)
    options = {entry.split("=")[0] for entry in entries if entry.startswith("--worker-utils")}
    ini_keys = {entry for entry in entries if entry.startswith("worker_utils_")}
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
