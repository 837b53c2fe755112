"""Every PostgreSQL setting from the command line, the environment or the ini file."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import PRECEDENCE, SOURCES, Given
from tests.postgres.conftest import URL
from worker_utils._settings import Setting
from worker_utils.postgres.plugin import (
    BINDIR,
    EXTENSION_SCHEMA,
    EXTENSIONS,
    MODE,
    PREFIX,
    RESET,
)
from worker_utils.postgres.plugin import URL as URL_SETTING

SHOW = """
import os
from worker_utils.postgres.plugin import _pg_key

def test_show(request):
    settings = request.config.stash[_pg_key]
    for name in ("url", "mode", "reset", "prefix", "extensions", "extension_schema"):
        print("\\npostgres_" + name, getattr(settings, name))
    print("\\npostgres_bindir", os.environ.get("WORKER_UTILS_POSTGRES_BINDIR"))
"""


@pytest.fixture
def bindir(tmp_path: Path) -> Path:
    """A directory that looks like PostgreSQL's bin directory."""
    directory = tmp_path / "pg" / "bin"
    directory.mkdir(parents=True)
    for name in ("initdb", "pg_ctl", "postgres"):
        (directory / name).write_text("")
    return directory


#: Each setting, a value for it, and the line the inner run shows for that value.
GIVEN = [
    (URL_SETTING, URL, f"postgres_url {URL}"),
    (MODE, "database", "postgres_mode database"),
    (RESET, "delete", "postgres_reset delete"),
    (PREFIX, "wu_settings", "postgres_prefix wu_settings"),
    (EXTENSIONS, "citext, hstore", "postgres_extensions ['citext', 'hstore']"),
    (EXTENSION_SCHEMA, "extensions", "postgres_extension_schema extensions"),
    (BINDIR, "{bindir}", "postgres_bindir {bindir}"),
]


@pytest.mark.parametrize("source", SOURCES)
def test_each_setting_is_read_from_every_source(given: Given, bindir: Path, source: str) -> None:
    # Every setting at once, each with a value of its own: one run shows them all.
    for setting, text, _ in GIVEN:
        given(setting, text.format(bindir=bindir), source)
    lines = given.shown(SHOW)
    for setting, _, shown in GIVEN:
        assert shown.format(bindir=bindir) in lines, setting.name


@pytest.mark.parametrize("sources", PRECEDENCE)
def test_the_option_wins_over_the_variable_which_wins_over_the_ini_file(
    given: Given, sources: tuple[str, ...]
) -> None:
    resets = {"option": "delete", "env": "truncate", "ini": "none"}
    winner = given.each(RESET, resets, sources)
    assert f"postgres_reset {winner or 'auto'}" in given.shown(SHOW)


@pytest.mark.parametrize("source", SOURCES)
def test_a_bad_mode_names_the_setting_where_it_came_from_and_what_is_accepted(
    given: Given, source: str
) -> None:
    origin = given(MODE, "schemas", source)
    assert given.usage_error() == [
        f"ERROR: worker_utils_postgres_mode (from {origin}): found 'schemas'; "
        "expected schema or database"
    ]


@pytest.mark.parametrize(
    ("setting", "text", "source", "message"),
    [
        (
            RESET,
            "rollback",
            "ini",
            "worker_utils_postgres_reset (from tox.ini): found 'rollback'; "
            "expected auto, transaction, delete, truncate or none",
        ),
        (
            PREFIX,
            "pg_mine",
            "env",
            "worker_utils_postgres_prefix (from WORKER_UTILS_POSTGRES_PREFIX): found 'pg_mine'; "
            "expected a lower-case identifier (letters, digits, '_') of at most 43 bytes, "
            "not starting with pg_",
        ),
        (
            PREFIX,
            "p" * 44,
            "option",
            "worker_utils_postgres_prefix (from --worker-utils-postgres-prefix): found '"
            + "p" * 44
            + "'; expected a lower-case identifier (letters, digits, '_') of at most 43 bytes, "
            "not starting with pg_",
        ),
        (
            BINDIR,
            "/nonexistent",
            "env",
            "worker_utils_postgres_bindir (from WORKER_UTILS_POSTGRES_BINDIR): "
            "found '/nonexistent'; expected a directory holding initdb, pg_ctl and postgres",
        ),
    ],
    ids=["reset", "prefix-pg_", "prefix-44-bytes", "bindir"],
)
def test_a_bad_value_is_one_usage_error(
    given: Given, setting: Setting[object], text: str, source: str, message: str
) -> None:
    given(setting, text, source)
    assert given.usage_error() == [f"ERROR: {message}"]


def test_a_prefix_of_43_bytes_is_accepted(given: Given) -> None:
    given(PREFIX, "p" * 43, "env")
    assert f"postgres_prefix {'p' * 43}" in given.shown(SHOW)


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory that the server's user can read and write when tests run as root."""
    path = Path(tempfile.mkdtemp(prefix="wu-bindir-"))
    path.chmod(0o777)
    yield path
    shutil.rmtree(path)


def test_the_bindir_option_starts_the_embedded_server_from_that_directory(
    given: Given, shared_dir: Path
) -> None:
    from worker_utils.servers.postgres import find_postgres_bindir

    real = find_postgres_bindir()
    used = shared_dir / "used"
    mine = shared_dir / "bin"
    mine.mkdir(mode=0o755)
    (mine / "initdb").write_text(f'#!/bin/sh\necho yes > {used}\nexec {real / "initdb"} "$@"\n')
    (mine / "initdb").chmod(0o755)
    for name in ("pg_ctl", "postgres"):
        (mine / name).symlink_to(real / name)
    given.pytester.makepyfile(
        "def test_it(worker_postgres_server_url):\n"
        "    assert worker_postgres_server_url.startswith('postgresql://postgres@127.0.0.1:')\n"
    )
    result = given.pytester.runpytest("-n", "2", "-p", "no:randomly", f"{BINDIR.option}={mine}")
    result.assert_outcomes(passed=1)
    assert used.read_text() == "yes\n"
