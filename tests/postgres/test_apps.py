"""Applications as they are: URL-only libraries, session-scoped engines, lock waits, leaks,
extensions made by tests, scratch databases and the names of the setup's constraints."""

from __future__ import annotations

import json
import uuid

import psycopg
import pytest

from tests.postgres.conftest import URL, Example, databases, execute, schemas
from worker_utils import postgres
from worker_utils.postgres import _namespace
from worker_utils.postgres._names import record

APP_SUITE = """
import asyncio

import psycopg
import psycopg2
import pytest
import sqlalchemy
from sqlalchemy import text

from worker_utils.postgres import render_url

SEEN = []


@pytest.fixture(scope="session")
def worker_postgres_setup():
    def setup(conn):
        conn.execute("CREATE TABLE category (id int PRIMARY KEY)")
        conn.execute(
            "CREATE TABLE product (id serial PRIMARY KEY, category_id int REFERENCES category, "
            "slug text, CONSTRAINT uniq_product_slug_per_category UNIQUE (category_id, slug))"
        )
        conn.execute("CREATE INDEX product_by_slug ON product (slug)")
        conn.execute("INSERT INTO category VALUES (1)")

    return setup


@pytest.fixture(scope="session")
def engine(worker_postgres_url, worker_postgres_dsn, worker_postgres_schema):
    # Configured once per worker, as an application does: the URL as it is.
    engine = sqlalchemy.create_engine(worker_postgres_url)
    yield engine
    engine.dispose()


@pytest.mark.parametrize("n", range(3))
def test_a_session_engine_writes_and_each_test_starts_clean(engine, n):
    with engine.begin() as conn:
        assert conn.execute(text("SELECT count(*) FROM product")).scalar() == 0
        assert conn.execute(text("SELECT count(*) FROM category")).scalar() == 1
        conn.execute(text("INSERT INTO product (category_id, slug) VALUES (1, 'tea')"))


@pytest.mark.parametrize("n", range(2))
def test_a_test_without_any_postgres_fixture_is_reset_too(n):
    # The engine fixture was made by an earlier test of this worker; it commits.
    with SEEN[0].begin() as conn:
        assert conn.execute(text("SELECT count(*) FROM product")).scalar() == 0
        conn.execute(text("INSERT INTO product (category_id, slug) VALUES (1, 'tea')"))


@pytest.fixture(autouse=True)
def _keep(request):
    if "engine" in request.fixturenames:
        SEEN[:] = [request.getfixturevalue("engine")]


def test_every_driver_lands_in_the_workers_namespace(
    worker_postgres_url, worker_postgres_schema, worker_postgres_namespace
):
    names = {worker_postgres_namespace.name}
    with psycopg.connect(worker_postgres_url) as conn:
        names.add(conn.execute("SELECT current_schema() || current_database()").fetchone()[0])
    with psycopg2.connect(worker_postgres_url) as conn, conn.cursor() as cursor:
        cursor.execute("SELECT current_schema() || current_database()")
        names.add(cursor.fetchone()[0])
    engine = sqlalchemy.create_engine(render_url(worker_postgres_url, "sqlalchemy").url)
    with engine.connect() as conn:
        names.add(conn.execute(text("SELECT current_schema() || current_database()")).scalar())
    engine.dispose()

    async def main():
        import asyncpg

        target = render_url(worker_postgres_url, driver="asyncpg")
        conn = await asyncpg.connect(target.url, server_settings=target.server_settings)
        try:
            return await conn.fetchval("SELECT current_schema() || current_database()")
        finally:
            await conn.close()

    names.add(asyncio.run(main()))
    names.discard(worker_postgres_namespace.name)
    assert names == {worker_postgres_schema + worker_postgres_namespace.database}


def test_the_setups_constraint_names_are_kept(engine, worker_postgres):
    with pytest.raises(sqlalchemy.exc.IntegrityError) as info, engine.begin() as conn:
        conn.execute(text("INSERT INTO product (category_id, slug) VALUES (1, 'a'), (1, 'a')"))
    assert info.value.orig.diag.constraint_name == "uniq_product_slug_per_category"
    names = worker_postgres.execute(
        "SELECT relname FROM pg_class WHERE relnamespace = current_schema()::regnamespace "
        "AND relkind IN ('i', 'S') ORDER BY 1"
    ).fetchall()
    assert names == [
        ("category_pkey",), ("product_by_slug",), ("product_id_seq",), ("product_pkey",),
        ("uniq_product_slug_per_category",),
    ]


def test_scratch_databases_carry_the_workers_name(
    worker_postgres_scratch_database, worker_postgres_namespace, worker_postgres_server_url
):
    url = worker_postgres_scratch_database("archive")
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT current_database()").fetchone() == (
            worker_postgres_namespace.name + "_archive",
        )
    # A library that creates and drops its databases itself gets only the name.
    url = worker_postgres_scratch_database("made_by_app", create=False)
    name = worker_postgres_namespace.name + "_made_by_app"
    assert url.split("?")[0].endswith("/" + name)
    with psycopg.connect(worker_postgres_server_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
"""


@pytest.mark.parametrize("mode", ["schema", "database"])
def test_a_url_only_application_runs_isolated_and_clean(example: Example, mode: str) -> None:
    example.copy("pollution", ini=f"worker_utils_postgres_mode = {mode}\n")
    (example.pytester.path / "test_pollution.py").unlink()
    example.pytester.makepyfile(test_app=APP_SUITE)
    if mode == "schema":
        result = example.pytester.runpytest("-n", "2", "--dist", "loadfile", "-p", "no:randomly")
    else:
        result = example.pytester.runpytest("-n", "0", "-p", "no:randomly")
    result.assert_outcomes(passed=8)
    # prefix's teardown checks that no schema or database (scratch ones included) is left.


LOCK_SUITE = """
import psycopg
import pytest

LEAKED = []


@pytest.fixture(scope="session")
def worker_postgres_setup():
    def setup(conn):
        conn.execute("CREATE TABLE item (slug text PRIMARY KEY, n int)")

    return setup


@pytest.fixture(scope="session", autouse=True)
def _close_the_leaked_at_the_end():
    # The run shares its process with the test that starts it: the connections the
    # resets ended must not outlive it.
    yield
    for conn in LEAKED:
        conn.close()


def test_blocked_by_its_own_worker_postgres(worker_postgres, worker_postgres_url):
    worker_postgres.execute("INSERT INTO item VALUES ('tea', 1)")
    with psycopg.connect(worker_postgres_url) as app:
        app.execute("INSERT INTO item VALUES ('tea', 2)")


def test_leaks_a_connection_with_a_row(worker_postgres_url):
    conn = psycopg.connect(worker_postgres_url)
    conn.execute("INSERT INTO item VALUES ('cake', 1)")
    LEAKED.append(conn)


def test_blocked_by_a_connection_an_earlier_test_leaked(worker_postgres_url):
    with psycopg.connect(worker_postgres_url) as app:
        app.execute("INSERT INTO item VALUES ('cake', 2)")


def test_leaks_a_lock_the_reset_needs(worker_postgres_url):
    with psycopg.connect(worker_postgres_url, autocommit=True) as conn:
        conn.execute("INSERT INTO item VALUES ('jam', 1)")
    conn = psycopg.connect(worker_postgres_url)
    conn.execute("UPDATE item SET n = 2 WHERE slug = 'jam'")
    LEAKED.append(conn)


@pytest.mark.parametrize("n", range(2))
def test_creates_an_extension_in_its_schema(worker_postgres_url, n):
    with psycopg.connect(worker_postgres_url, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS hstore")
"""


def test_lock_waits_fail_naming_the_blocker_and_leaks_and_extensions_are_reported(
    example: Example, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The resets that find a leaked lock try for 0.2 s, not 2 s, before ending its holder.
    monkeypatch.setattr(_namespace, "_LOCK_TIMEOUT", "200ms")
    example.copy("pollution", ini="worker_utils_postgres_lock_timeout = 300ms\n")
    (example.pytester.path / "test_pollution.py").unlink()
    example.pytester.makepyfile(test_locks=LOCK_SUITE)
    result = example.pytester.runpytest("-n", "0", "-p", "no:randomly", "-rfE")
    # Two connections ended at one reset (the earlier leak is in the way too): 2 + 1 warnings.
    result.assert_outcomes(passed=4, failed=2, warnings=3)
    result.stdout.fnmatch_lines(
        [
            "*_ test_blocked_by_its_own_worker_postgres _*",
            "worker_postgres: a lock wait ran out after 300ms "
            "(worker_utils_postgres_lock_timeout): "
            "the worker_postgres connection of this test holds the lock in its uncommitted "
            "transaction; commit it (worker_postgres.commit()) before the code under test "
            "touches the same rows",
            "*_ test_blocked_by_a_connection_an_earlier_test_leaked _*",
            "worker_postgres: a lock wait ran out after 300ms "
            "(worker_utils_postgres_lock_timeout): "
            "a connection that test_locks.py::test_leaks_a_connection_with_a_row left open in a "
            "transaction holds the lock (pid *); commit or close the connections a test opens "
            "before it ends",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "*WorkerUtilsPostgresWarning: worker_postgres: "
            "test_locks.py::test_leaks_a_connection_with_a_row left a connection open in a "
            "transaction (pid *, application_name 'wu_t*') holding a lock in schema wu_t*; "
            "the reset ended it: commit or close the connections a test opens before it ends",
            "*WorkerUtilsPostgresWarning: worker_postgres: "
            "test_locks.py::test_leaks_a_lock_the_reset_needs left a connection open in a "
            "transaction (pid *, application_name 'wu_t*') holding a lock in schema wu_t*; "
            "the reset ended it: commit or close the connections a test opens before it ends",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "*WorkerUtilsPostgresWarning: worker_postgres: "
            "test_locks.py::test_creates_an_extension_in_its_schema[[]0[]] created extension "
            "'hstore' in schema wu_t*, which other workers do not see and which goes with it; "
            "add hstore to worker_utils_postgres_extensions to create it once for every worker",
        ]
    )


def test_a_crashed_workers_scratch_databases_are_reaped(prefix: str) -> None:
    namespace = postgres.WorkerNamespace(URL, f"{prefix}_0123456789_gw0", "0123456789")
    namespace.create()
    namespace.scratch_database("made")
    namespace.scratch_database("by_app", create=False)
    execute_url = postgres.namespace_dsn(URL)
    with psycopg.connect(execute_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {prefix}_0123456789_gw0_by_app")
    assert databases(prefix) == [f"{prefix}_0123456789_gw0_by_app", f"{prefix}_0123456789_gw0_made"]
    # A crash: the connections go, nothing is dropped.
    assert namespace._keeper is not None
    namespace._keeper.close()
    result = postgres.reap(URL)
    assert f"{prefix}_0123456789_gw0" in result.dropped
    assert databases(prefix) == schemas(prefix) == []


def test_a_scratch_suffix_that_does_not_fit_is_named() -> None:
    name = "test_worker_0123456789_gw0"
    with pytest.raises(ValueError) as info:
        postgres.WorkerNamespace(URL, name, "0123456789").scratch_database("x" * 40)
    assert str(info.value) == (
        f"worker_postgres_scratch_database: suffix {'x' * 40!r} makes {name + '_' + 'x' * 40!r} "
        "longer than PostgreSQL's 63-byte limit; use at most 36 bytes"
    )


def test_reap_lists_and_drops_the_scratch_databases_the_code_under_test_made() -> None:
    # A schema of a dead worker (this process's own record counts as dead, as for a
    # reaper started by the worker itself) that named a scratch database, which the
    # code under test then created: no record of its own, so only its owner lists it.
    name = f"wu_t_{uuid.uuid4().hex[:8]}_gw0"
    scratch = f"{name}_made_by_app"
    owner = record("schema", name, "test", "0" * 32)
    owner["scratch"] = [scratch, f"{name}_never_made"]
    execute(f"CREATE SCHEMA {name}")
    execute(f"COMMENT ON SCHEMA {name} IS '{json.dumps(owner)}'")
    execute(f"CREATE DATABASE {scratch}")
    try:
        mine = [
            f"would drop schema {name}",
            f"would drop database {scratch} (scratch database of {name})",
        ]
        dry: list[str] = []
        postgres.reap(URL, dry_run=True, log=dry.append)
        assert [line for line in dry if name in line] == mine
        assert databases(name) == [scratch]
        done: list[str] = []
        postgres.reap(URL, log=done.append)
        assert [line for line in done if name in line] == [
            line.replace("would drop", "dropped") for line in mine
        ]
        assert databases(name) == []
        assert schemas(name) == []
    finally:
        execute(f"DROP SCHEMA IF EXISTS {name}")
        execute(f"DROP DATABASE IF EXISTS {scratch}")
