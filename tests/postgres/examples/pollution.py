"""A suite that fails if any other test, worker or run shares its tables.

Every test uses the same table names and primary keys and asserts exact counts,
through the fixture connection or through connections of its own.
"""

import json
import os
import uuid
from pathlib import Path

import psycopg
import pytest


def record(**data):
    directory = Path(os.environ["WU_TEST_RECORD_DIR"])
    (directory / f"{uuid.uuid4().hex}.json").write_text(json.dumps(data))


def seen(schema, via):
    record(
        schema=schema,
        via=via,
        run=os.environ["WORKER_UTILS_TESTRUN_UID"],
        worker=os.environ.get("PYTEST_XDIST_WORKER", "master"),
    )


@pytest.fixture(scope="session")
def worker_postgres_setup():
    def setup(conn):
        conn.execute("CREATE TABLE account (id int PRIMARY KEY, owner text NOT NULL)")
        conn.execute(
            "CREATE TABLE entry (id serial PRIMARY KEY,"
            " account int NOT NULL REFERENCES account, amount int NOT NULL)"
        )
        conn.commit()

    return setup


@pytest.mark.parametrize("n", range(6))
def test_the_fixture_connection_sees_only_its_own_rows(worker_postgres, worker_postgres_schema, n):
    worker_postgres.execute("INSERT INTO account VALUES (1, 'ann'), (2, 'bob')")
    worker_postgres.execute("INSERT INTO entry (account, amount) VALUES (1, %s)", [n])
    with worker_postgres.transaction():  # the code under test's own transaction: a savepoint
        worker_postgres.execute("INSERT INTO entry (account, amount) VALUES (2, 1)")
    assert worker_postgres.execute("SELECT count(*) FROM account").fetchone() == (2,)
    assert worker_postgres.execute("SELECT count(*) FROM entry").fetchone() == (2,)
    worker_postgres.execute("CREATE TABLE scratch (id int PRIMARY KEY)")  # rolled back too
    seen(worker_postgres_schema, "fixture")


@pytest.mark.parametrize("n", range(6))
def test_application_connections_see_only_this_tests_rows(
    worker_postgres_dsn, worker_postgres_schema, n
):
    with psycopg.connect(worker_postgres_dsn) as app:
        app.execute("INSERT INTO account VALUES (1, 'ann')")
        app.execute("INSERT INTO entry (account, amount) VALUES (1, %s)", [n])
    with psycopg.connect(worker_postgres_dsn) as other:
        assert other.execute("SELECT count(*), max(id) FROM entry").fetchone() == (1, 1)
        assert other.execute("SELECT current_schema()").fetchone() == (worker_postgres_schema,)
    seen(worker_postgres_schema, "application")


@pytest.mark.worker_postgres(reset="truncate")
@pytest.mark.parametrize("n", range(3))
def test_truncate_mode_leaves_empty_tables(worker_postgres, worker_postgres_schema, n):
    worker_postgres.execute("INSERT INTO account VALUES (1, 'ann')")
    worker_postgres.commit()
    assert worker_postgres.execute("SELECT count(*) FROM account").fetchone() == (1,)
    seen(worker_postgres_schema, "truncate")


@pytest.mark.parametrize("n", range(3))
def test_the_fixture_and_the_application_see_the_same_rows(
    worker_postgres, worker_postgres_dsn, worker_postgres_schema, n
):
    with psycopg.connect(worker_postgres_dsn) as app:
        app.execute("INSERT INTO account VALUES (1, 'ann')")
    worker_postgres.execute("INSERT INTO account VALUES (2, 'bob')")
    worker_postgres.commit()
    with psycopg.connect(worker_postgres_dsn) as app:
        assert app.execute("SELECT count(*) FROM account").fetchone() == (2,)
    seen(worker_postgres_schema, "both")
