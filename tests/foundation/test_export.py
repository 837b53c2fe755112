"""Environment export: the worker's own URLs in variables before conftest.py files are imported."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.conftest import RECORD_SNIPPET, Given
from worker_utils.postgres.plugin import ENV as POSTGRES_ENV
from worker_utils.redis.plugin import ENV as REDIS_ENV
from worker_utils.sqlite.plugin import ENV as SQLITE_ENV

POSTGRES = os.environ.get(
    "WU_TEST_POSTGRES_URL",
    "postgresql://postgres@127.0.0.1:5432/test",  # noqa: WU202 the machine's server
)
REDIS = os.environ.get("WU_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")  # noqa: WU202,WU602
PREFIX = "wu_xa"
#: For the test of an overridden server, which runs beside the others.
OTHER_PREFIX = "wu_xb"
#: For the tests of what is undone, which run beside the others and count schemas.
SCOPED_PREFIX = "wu_xc"
COMMITS_PREFIX = "wu_xd"

# Read once, at import time, as Django settings or a module-level engine would.
SETTINGS = """
import os

DATABASE_URL = os.environ.get("DATABASE_URL")
ENGINE_URL = os.environ.get("ENGINE_URL")
REDIS_URL = os.environ.get("REDIS_URL")
SQLITE_PATH = os.environ.get("SQLITE_PATH")
"""
# The application under test, and a subprocess it starts, never see a fixture.
TEST = (
    RECORD_SNIPPET
    + """
import os
import subprocess
import sys

import psycopg
import pytest
import redis

import settings

CHILD = '''
import os, psycopg, redis
with psycopg.connect(os.environ["DATABASE_URL"]) as conn:
    print(conn.execute("SELECT current_schema()").fetchone()[0])
client = redis.Redis.from_url(os.environ["REDIS_URL"])
print(client.get("written"))
client.close()
'''


@pytest.mark.parametrize("n", range(4))
def test_app(n):
    with psycopg.connect(settings.DATABASE_URL) as conn:
        schema = conn.execute("SELECT current_schema()").fetchone()[0]
    client = redis.Redis.from_url(settings.REDIS_URL)
    client.set("written", f"{schema}-{n}")
    db = client.connection_pool.connection_kwargs["db"]
    child = subprocess.run(
        [sys.executable, "-c", CHILD], capture_output=True, text=True, check=True
    ).stdout.split()
    client.delete("written")
    client.close()
    record(
        worker=os.environ.get("PYTEST_XDIST_WORKER", "master"),
        schema=schema,
        child=child,
        n=n,
        db=db,
        engine=settings.ENGINE_URL.partition("://")[0],
        sqlite=os.path.isfile(settings.SQLITE_PATH),
        sqlite_worker=os.path.basename(os.path.dirname(settings.SQLITE_PATH)),
    )
"""
)


def _schemas(prefix: str = PREFIX) -> list[str]:
    with psycopg.connect(POSTGRES) as conn:
        rows = conn.execute(
            "SELECT nspname FROM pg_namespace WHERE starts_with(nspname, %s)", [prefix]
        ).fetchall()
    return [row[0] for row in rows]


@pytest.mark.parametrize("n", ["0", "2"])
def test_import_time_settings_and_subprocesses_see_the_workers_own_resources(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    read_records: Callable[[], list[dict[str, Any]]],
    n: str,
) -> None:
    for name in ("DATABASE_URL", "ENGINE_URL", "REDIS_URL", "SQLITE_PATH"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WORKER_UTILS_POSTGRES_URL", POSTGRES)
    monkeypatch.setenv("WORKER_UTILS_REDIS_URL", REDIS)
    pytester.makeini(
        f"""
        [pytest]
        worker_utils_postgres_prefix = {PREFIX}
        worker_utils_postgres_env = DATABASE_URL ENGINE_URL:sqlalchemy
        worker_utils_redis_env = REDIS_URL
        worker_utils_sqlite_env = SQLITE_PATH:path
        """
    )
    pytester.makepyfile(settings=SETTINGS)
    pytester.makeconftest("import settings  # before any fixture exists")
    pytester.makepyfile(test_app=TEST)
    result = pytester.runpytest("-n", n, "-p", "no:randomly")
    result.assert_outcomes(passed=4)
    records = read_records()
    workers = {record["worker"] for record in records}
    assert workers == {"master"} if n == "0" else workers <= {"gw0", "gw1"}
    for record in records:
        schema = record["schema"]
        assert re.fullmatch(rf"{PREFIX}_[0-9a-f]{{10}}_{record['worker']}", schema), schema
        assert record["child"] == [schema, repr(f"{schema}-{record['n']}".encode())]
        assert record["db"] != 0, "database 0 holds the leases; the worker leased another"
        assert record["engine"] == "postgresql+psycopg"
        assert record["sqlite"], "the worker's file exists before the first test"
        assert record["sqlite_worker"] == record["worker"]
    by_worker = {record["worker"]: (record["schema"], record["db"]) for record in records}
    assert len(set(by_worker.values())) == len(by_worker), "each worker has its own"
    assert _schemas() == [], "the namespaces were dropped"


APP_COMMITS = """
import os

import psycopg
import pytest


@pytest.fixture(scope="session")
def worker_postgres_setup():
    return lambda conn: conn.execute("CREATE TABLE item (id int PRIMARY KEY)")


@pytest.mark.parametrize("n", range(2))
def test_the_application_commits_the_same_row(n, worker_postgres):
    assert worker_postgres.execute("SELECT count(*) FROM item").fetchone() == (0,)
    with psycopg.connect(os.environ["DATABASE_URL"]) as app:  # its own connection
        app.execute("INSERT INTO item VALUES (1)")
"""


def _exported_database_url(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, prefix: str = PREFIX
) -> None:
    """An inner run whose DATABASE_URL is the worker's, on the machine's server."""
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("WORKER_UTILS_POSTGRES_URL", POSTGRES)
    pytester.makeini(
        f"""
        [pytest]
        worker_utils_postgres_prefix = {prefix}
        worker_utils_postgres_env = DATABASE_URL
        """
    )


def test_what_the_application_commits_through_the_exported_url_is_undone_after_each_test(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The test asks only for worker_postgres, which alone would be rolled back; the
    # application's connection, from the exported variable, commits for real.
    _exported_database_url(pytester, monkeypatch, COMMITS_PREFIX)
    pytester.makepyfile(test_commits=APP_COMMITS)
    result = pytester.runpytest("-p", "no:randomly")
    result.assert_outcomes(passed=2)
    assert _schemas(COMMITS_PREFIX) == []


def test_the_previous_values_come_back_when_the_run_ends(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SQLITE_PATH", "before")
    monkeypatch.delenv("SQLITE_URL", raising=False)
    pytester.makepyfile(
        """
        import os

        def test_it(worker_tmp_path):
            assert os.environ["SQLITE_PATH"] == str(worker_tmp_path / "sqlite.db")
            assert os.environ["SQLITE_URL"] == "sqlite:///" + os.environ["SQLITE_PATH"]
        """
    )
    result = pytester.runpytest_inprocess(
        "-p", "no:randomly", "--worker-utils-sqlite-env", "SQLITE_PATH:path,SQLITE_URL"
    )
    result.assert_outcomes(passed=1)
    assert os.environ["SQLITE_PATH"] == "before"
    assert "SQLITE_URL" not in os.environ


@pytest.mark.parametrize(
    ("setting", "text", "reason", "accepted"),
    [
        (
            POSTGRES_ENV,
            "1DB",
            "'1DB' is not a variable name",
            "url, sqlalchemy, dsn (default url), such as DATABASE_URL or DATABASE_URL:sqlalchemy",
        ),
        (
            POSTGRES_ENV,
            "DATABASE_URL:jdbc",
            "'DATABASE_URL:jdbc': no form 'jdbc'",
            "url, sqlalchemy, dsn (default url), such as DATABASE_URL or DATABASE_URL:sqlalchemy",
        ),
        (
            REDIS_ENV,
            "A A:prefix",
            "A is given twice",
            "url, prefix (default url), such as REDIS_URL",
        ),
        (
            SQLITE_ENV,
            "DB:file",
            "'DB:file': no form 'file'",
            "url, path (default url), such as DATABASE_URL or DB_PATH:path",
        ),
    ],
)
@pytest.mark.parametrize("n", ["0", "2"])
def test_a_bad_export_setting_is_one_usage_error_naming_it(
    given: Given, setting: Any, text: str, reason: str, accepted: str, n: str
) -> None:
    given(setting, text, "env")
    assert given.usage_error("-n", n) == [
        f"ERROR: {setting.ini} (from {setting.env}): found {text!r} ({reason}); expected "
        f"variable names, each optionally followed by :FORM with FORM one of {accepted}"
    ]


def test_an_overridden_server_fixture_is_an_error_naming_the_setting_to_use(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("WORKER_UTILS_POSTGRES_URL", POSTGRES)
    other = POSTGRES.rpartition("/")[0] + "/postgres"
    pytester.makeconftest(
        f"""
        import pytest

        @pytest.fixture(scope="session")
        def worker_postgres_server_url():
            return {other!r}
        """
    )
    pytester.makepyfile("def test_it(): pass")
    result = pytester.runpytest(
        "-p",
        "no:randomly",
        "--worker-utils-postgres-env=DATABASE_URL",
        f"--worker-utils-postgres-prefix={OTHER_PREFIX}",
    )
    result.assert_outcomes(errors=1)
    name = f"{OTHER_PREFIX}_*_master"
    query = f"application_name={name}&options=-csearch_path%3D{name}%2Cpublic*"
    result.stdout.fnmatch_lines(
        [
            f"worker_utils_postgres_env: DATABASE_URL was set to {POSTGRES}?{query} before "
            f"conftest.py files were imported, but this worker's URL is {other}?{query} (an "
            f"overridden worker_postgres_server_url fixture); give the server with "
            f"worker_utils_postgres_url instead"
        ]
    )
    assert _schemas(OTHER_PREFIX) == []


def test_a_usage_error_before_pytest_configure_leaves_the_environment_as_it_was(
    pytester: pytest.Pytester,
) -> None:
    before = dict(os.environ)
    pytester.makepyfile("def test_it(): pass")
    result = pytester.runpytest_inprocess("-p", "no:randomly", "--worker-utils-sqlite-env=1BAD")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert dict(os.environ) == before, "the run started early was ended, its variables restored"


SCOPED_FIXTURES = """
import os

import psycopg
import pytest


def count():
    with psycopg.connect(os.environ["DATABASE_URL"]) as conn:
        return conn.execute("SELECT count(*) FROM item").fetchone()[0]


def insert(n):
    with psycopg.connect(os.environ["DATABASE_URL"]) as conn:
        conn.execute("INSERT INTO item SELECT generate_series(1, %s)", [n])


@pytest.fixture(scope="session")
def late_session():
    insert(100)


@pytest.fixture
def row_then_session(request):
    insert(7)  # the test's, as any function fixture's: never kept
    request.getfixturevalue("late_session")


@pytest.fixture(scope="session", autouse=True)
def seeded():
    # As pytest-django's django_db_setup override, or create_all and its seed rows.
    with psycopg.connect(os.environ["DATABASE_URL"]) as conn:
        conn.execute("CREATE TABLE item (id int)")
        conn.execute("INSERT INTO item VALUES (0)")
"""
SCOPED_A = """
import pytest
from conftest import count, insert


@pytest.fixture(scope="module", autouse=True)
def module_rows():
    insert(10)
    yield
    with __import__("psycopg").connect(__import__("os").environ["DATABASE_URL"]) as conn:
        conn.execute("DELETE FROM item WHERE id > 0")


@pytest.mark.parametrize("n", range(2))
def test_session_and_module_rows_stay_and_the_tests_go(n):
    assert count() == 11
    insert(5)
"""
SCOPED_B = """
import pytest
from conftest import count, insert


@pytest.mark.worker_postgres(reset="none")
def test_1_keeps_its_rows():
    assert count() == 1  # the module's rows went with its teardown
    insert(3)


def test_2_sees_them_and_is_undone():
    assert count() == 4
    insert(2)


def test_3_starts_from_the_session_row():
    assert count() == 1


def test_4_a_function_fixture_pulls_in_a_session_fixture(row_then_session):
    assert count() == 108


def test_5_keeps_none_of_the_tests_rows():
    assert count() == 1
"""


def test_what_session_and_module_fixtures_store_stays_for_their_tests_only(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    _exported_database_url(pytester, monkeypatch, SCOPED_PREFIX)
    pytester.makeconftest(SCOPED_FIXTURES)
    pytester.makepyfile(test_a=SCOPED_A, test_b=SCOPED_B)
    result = pytester.runpytest("-p", "no:randomly", "-n", "0")
    result.assert_outcomes(passed=7)
    assert _schemas(SCOPED_PREFIX) == []
