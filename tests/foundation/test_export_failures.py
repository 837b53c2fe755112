"""An export that cannot be made: one clear line, never the shell's value for the application."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import psycopg
import pytest

from tests.conftest import Given
from worker_utils.postgres.plugin import BINDIR as POSTGRES_BINDIR
from worker_utils.postgres.plugin import ENV as POSTGRES_ENV
from worker_utils.postgres.plugin import URL as POSTGRES_URL
from worker_utils.redis.plugin import ENV as REDIS_ENV
from worker_utils.redis.plugin import URL as REDIS_URL

POSTGRES = os.environ.get(
    "WU_TEST_POSTGRES_URL",
    "postgresql://postgres@127.0.0.1:5432/test",  # noqa: WU202 the machine's server
)
# What the shell had set: a real server's database, which the application must never get.
SHELL_REDIS = "redis://127.0.0.1:6379/7"  # noqa: WU202,WU602 never connected to
SHELL_DATABASE = POSTGRES
NOWHERE_REDIS = "redis://127.0.0.1:1/0"  # noqa: WU202,WU602 no server listens on port 1
REDIS_DOWN = (
    f"worker_redis: cannot connect to {NOWHERE_REDIS} (Error 111 connecting to 127.0.0.1:1. "
    f"Connection refused); start Redis there, or set WORKER_UTILS_REDIS_URL to a running server"
)
# Read at import time, as a module-level client would; the test uses it as the application does.
APP = """
import os

URL = os.environ.get("{variable}")
with open("seen-" + os.environ.get("PYTEST_XDIST_WORKER", "master"), "w") as out:
    out.write(str(URL))
"""


def _seen(path: Path) -> set[str]:
    return {seen.read_text() for seen in path.glob("seen-*")}


@pytest.mark.parametrize("n", ["0", "2"])
def test_an_unreachable_redis_never_leaves_the_application_the_shells_url(
    given: Given, monkeypatch: pytest.MonkeyPatch, n: str
) -> None:
    monkeypatch.setenv("REDIS_URL", SHELL_REDIS)
    given(REDIS_URL, NOWHERE_REDIS, "env")
    given(REDIS_ENV, "REDIS_URL", "ini")
    given.pytester.makeconftest(APP.format(variable="REDIS_URL"))
    given.pytester.makepyfile(
        """
        import conftest
        import pytest
        import redis

        def test_uses_the_application_client():
            redis.Redis.from_url(conftest.URL).ping()

        def test_needs_nothing():
            pass

        @pytest.mark.isolated
        def test_isolated_uses_the_application_client():
            redis.Redis.from_url(conftest.URL).ping()
        """
    )
    if n == "0":
        # The process that owns the run stops before any conftest is imported.
        assert given.usage_error("-n", n) == [f"ERROR: {REDIS_DOWN}"]
        assert _seen(given.pytester.path) == set()
    else:
        # Each worker's tests fail with the one line, not with the client's ConnectionError.
        result = given.run("-n", n)
        result.assert_outcomes(errors=3)
        assert result.stdout.lines.count(REDIS_DOWN) == 3
        assert "ConnectionError" not in result.stdout.str()
        placeholder = "redis://127.0.0.1:1/999999999"  # noqa: WU202,WU602 the index no server has
        assert _seen(given.pytester.path) == {placeholder}
    assert os.environ["REDIS_URL"] == SHELL_REDIS


@pytest.mark.parametrize("url", ["garbage://x", "postgresql://postgres@[::1"])
@pytest.mark.parametrize("n", ["0", "2"])
def test_a_bad_postgres_url_is_the_same_usage_error_with_an_export(
    given: Given, url: str, n: str
) -> None:
    given(POSTGRES_URL, url, "env")
    without = given.usage_error("-n", n)
    assert len(without) == 1
    assert without[0].startswith(f"ERROR: WORKER_UTILS_POSTGRES_URL: {url!r} is not a PostgreSQL")
    given(POSTGRES_ENV, "DATABASE_URL", "ini")
    assert given.usage_error("-n", n) == without


@pytest.fixture
def failing_bindir(tmp_path: Path) -> Path:
    """A directory of PostgreSQL binaries that each refuse to run (or cannot be run)."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for name in ("initdb", "pg_ctl", "postgres"):
        program = bindir / name
        program.write_text(f'#!/bin/sh\necho "{name} of this test refuses" >&2\nexit 1\n')
        program.chmod(program.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return bindir


@pytest.mark.parametrize("source", ["option", "ini"])
@pytest.mark.parametrize("n", ["0", "2"])
def test_an_embedded_server_that_cannot_start_is_one_usage_error_with_an_export(
    given: Given, monkeypatch: pytest.MonkeyPatch, failing_bindir: Path, source: str, n: str
) -> None:
    monkeypatch.setenv("DATABASE_URL", SHELL_DATABASE)
    given(POSTGRES_BINDIR, str(failing_bindir), source)  # read before the export starts it
    given(POSTGRES_ENV, "DATABASE_URL", "ini")
    given.pytester.makeconftest(APP.format(variable="DATABASE_URL"))
    error = given.usage_error("-n", n)
    # The binaries of the setting were run: they refused, or (root runs initdb as the
    # postgres user, who may not enter this test's directory) could not be run.
    assert error[0].startswith("ERROR: worker_postgres: initdb "), error
    assert "initdb of this test refuses" in error or f"{failing_bindir}/initdb" in error[0]
    assert _seen(given.pytester.path) == set()
    assert os.environ["DATABASE_URL"] == SHELL_DATABASE


def test_the_dsn_form_is_libpqs_key_value_string(given: Given) -> None:
    given(POSTGRES_URL, POSTGRES, "env")
    given(POSTGRES_ENV, "PG_DSN:dsn DATABASE_URL", "ini")
    given.pytester.makepyfile(
        """
        import os

        import psycopg

        def test_it(worker_postgres_url):
            dsn = os.environ["PG_DSN"]
            assert "://" not in dsn and "dbname=" in dsn, dsn
            assert psycopg.conninfo.conninfo_to_dict(dsn) == psycopg.conninfo.conninfo_to_dict(
                worker_postgres_url
            )
            with psycopg.connect(dsn) as conn:
                schema = conn.execute("SELECT current_schema()").fetchone()[0]
            assert schema.endswith("_master")
        """
    )
    given.run("-n", "0").assert_outcomes(passed=1)
    assert psycopg  # the inner run needs it too


SQLITE_APP = """
import os
import sqlite3

import pytest

PATH = os.environ["SQLITE_PATH"]


@pytest.fixture(scope="session", autouse=True)
def schema():
    # As create_all in a session fixture: tables every test starts with.
    with sqlite3.connect(PATH) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS t (x INTEGER)")
"""
SQLITE_TESTS = """
import sqlite3

import pytest

import conftest


@pytest.mark.parametrize("i", range(3))
def test_a_row_without_any_fixture(i):
    with sqlite3.connect(conftest.PATH) as conn:
        conn.execute("INSERT INTO t VALUES (1)")
        assert conn.execute("SELECT count(*) FROM t").fetchone()[0] == 1


@pytest.mark.isolated
def test_a_row_in_an_isolated_process():
    with sqlite3.connect(conftest.PATH) as conn:
        conn.execute("INSERT INTO t VALUES (1)")
        assert conn.execute("SELECT count(*) FROM t").fetchone()[0] == 1
"""


@pytest.mark.parametrize(("reset", "outcomes"), [("auto", {"passed": 4}), ("none", {"failed": 3})])
def test_an_exported_sqlite_file_is_undone_after_tests_that_ask_for_no_fixture(
    given: Given, reset: str, outcomes: dict[str, int]
) -> None:
    given.pytester.makeconftest(SQLITE_APP)
    given.pytester.makepyfile(SQLITE_TESTS)
    result = given.run(
        "-n",
        "0",
        "--worker-utils-sqlite-env=SQLITE_PATH:path",
        "-o",
        f"worker_utils_sqlite_reset={reset}",
    )
    result.assert_outcomes(passed=outcomes.get("passed", 1), failed=outcomes.get("failed", 0))
