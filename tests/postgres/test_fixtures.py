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


def test_the_url_is_the_configured_server(worker_postgres_url):
    assert worker_postgres_url == {url!r}


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
    result = example.pytester.runpytest_subprocess("-n", workers)
    result.assert_outcomes(passed=5)
    assert schemas(example.prefix) == []
