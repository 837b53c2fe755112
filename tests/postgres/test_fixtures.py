"""The session-level PostgreSQL fixtures, used as an application's conftest would."""

from __future__ import annotations

import pytest

from tests.postgres.conftest import URL, Example, schemas

SUITE = """
import psycopg
import pytest
import worker_utils


@pytest.fixture(scope="session")
def app_connection(worker_postgres_namespace):
    # What an ORM engine does: connect once per worker from the namespace's DSN.
    conn = worker_postgres_namespace.connect(autocommit=True)
    conn.execute("CREATE TABLE IF NOT EXISTS note (body text)")
    yield conn
    conn.close()


def test_the_server_url_is_the_configured_server(worker_postgres_server_url):
    assert worker_postgres_server_url == {url!r}


@pytest.mark.parametrize("n", range(4))
def test_the_namespace_is_this_workers_schema(
    worker_postgres_namespace, worker_postgres_schema, app_connection, n
):
    assert worker_postgres_namespace.name == worker_postgres_schema
    assert worker_postgres_namespace.schema == worker_postgres_schema
    assert worker_postgres_schema.endswith("_" + worker_utils.get_worker_id())
    (schema,) = app_connection.execute("SELECT current_schema()").fetchone()
    assert schema == worker_postgres_schema
    with psycopg.connect(worker_postgres_namespace.dsn) as conn:
        assert conn.execute("SELECT current_schema()").fetchone() == (schema,)
"""


@pytest.mark.parametrize("workers", ["0", "2"])
def test_session_fixtures_give_each_worker_its_namespace_and_the_configured_url(
    example: Example, workers: str
) -> None:
    example.copy("pollution")  # writes the pytest.ini with this test's prefix
    (example.pytester.path / "test_pollution.py").unlink()
    example.pytester.makepyfile(test_session=SUITE.format(url=URL))
    result = example.pytester.runpytest("-n", workers)
    result.assert_outcomes(passed=5)
    assert schemas(example.prefix) == []


AUTOCOMMIT_SUITE = """
import asyncio

import pytest


@pytest.fixture(scope="session")
def worker_postgres_setup():
    def setup(conn):
        conn.execute("CREATE TABLE note (id int PRIMARY KEY)")

    return setup


def test_switching_to_autocommit_keeps_what_the_test_did(worker_postgres):
    worker_postgres.execute("INSERT INTO note VALUES (1)")
    worker_postgres.autocommit = True
    worker_postgres.execute("VACUUM note")  # refused inside a transaction
    assert worker_postgres.execute("SELECT id FROM note").fetchall() == [(1,)]


def test_the_next_test_is_in_a_transaction_again_and_the_row_is_gone(worker_postgres):
    assert not worker_postgres.autocommit
    assert worker_postgres.info.transaction_status.name == "INTRANS"
    assert worker_postgres.execute("SELECT count(*) FROM note").fetchone() == (0,)
    worker_postgres.execute("INSERT INTO note VALUES (2)")
    worker_postgres.set_autocommit(True)


def test_the_method_switches_too(worker_postgres):
    assert worker_postgres.execute("SELECT count(*) FROM note").fetchone() == (0,)


def test_the_async_twin_switches_with_set_autocommit(worker_postgres_async):
    async def main():
        async with worker_postgres_async() as conn:
            await conn.execute("INSERT INTO note VALUES (3)")
            await conn.set_autocommit(True)
            await conn.execute("VACUUM note")

    asyncio.run(main())


def test_and_is_undone_as_well(worker_postgres):
    assert worker_postgres.execute("SELECT count(*) FROM note").fetchone() == (0,)


@pytest.mark.worker_postgres(reset="delete")
def test_a_plain_connection_keeps_psycopgs_rule(worker_postgres):
    import psycopg

    worker_postgres.execute("INSERT INTO note VALUES (4)")
    with pytest.raises(psycopg.ProgrammingError, match="can't change 'autocommit' now"):
        worker_postgres.autocommit = True
"""


def test_a_transaction_test_may_switch_to_autocommit_and_gets_a_delete_reset(
    example: Example,
) -> None:
    example.copy("pollution")
    (example.pytester.path / "test_pollution.py").unlink()
    example.pytester.makepyfile(test_autocommit=AUTOCOMMIT_SUITE)
    result = example.pytester.runpytest("-n", "0", "-p", "no:randomly")
    result.assert_outcomes(passed=6)
    assert schemas(example.prefix) == []
