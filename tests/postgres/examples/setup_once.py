"""A run-wide setup that records each time it runs; WU_TEST_FUNCTION adds a function to it."""

import json
import os
import uuid
from pathlib import Path

import psycopg
import pytest

RECORDS = Path(os.environ["WU_TEST_RECORD_DIR"])


def record(**data):
    (RECORDS / f"{uuid.uuid4().hex}.json").write_text(json.dumps(data))


@pytest.fixture(scope="session")
def worker_postgres_setup():
    def setup(conn):
        record(setup=os.getpid())
        conn.execute("CREATE TABLE color (id serial PRIMARY KEY, name text UNIQUE)")
        conn.execute("CREATE TABLE shade (id serial PRIMARY KEY, color int REFERENCES color)")
        conn.execute("CREATE VIEW color_names AS SELECT name FROM color")
        conn.execute("INSERT INTO color (name) VALUES ('red'), ('green')")
        if os.environ.get("WU_TEST_FUNCTION"):
            conn.execute("CREATE FUNCTION answer() RETURNS int LANGUAGE sql AS 'SELECT 42'")

    return setup


@pytest.mark.parametrize(
    "reset",
    [
        pytest.param(mode, marks=pytest.mark.worker_postgres(reset=mode))
        for mode in ["delete"] * 3 + ["truncate"] * 2
    ],
)
def test_seed_rows_survive_tests_that_change_them(
    worker_postgres_dsn, worker_postgres_schema, reset
):
    with psycopg.connect(worker_postgres_dsn) as app:
        colors = app.execute("SELECT id, name FROM color ORDER BY id").fetchall()
        assert colors == [(1, "red"), (2, "green")]
        app.execute("UPDATE color SET name = 'crimson' WHERE id = 1")
        app.execute("DELETE FROM color WHERE id = 2")
        blue = app.execute("INSERT INTO color (name) VALUES ('blue') RETURNING id").fetchone()
        assert blue == (3,)  # the sequence carries on from the seed rows, every time
        app.execute("INSERT INTO shade (color) VALUES (3)")
    record(schema=worker_postgres_schema, worker=os.environ.get("PYTEST_XDIST_WORKER"))


@pytest.mark.parametrize("n", range(4))
def test_sees_the_seed_rows_and_adds_its_own(worker_postgres, worker_postgres_schema, n):
    assert worker_postgres.execute("SELECT count(*) FROM color_names").fetchone() == (2,)
    new = worker_postgres.execute("INSERT INTO color (name) VALUES ('blue') RETURNING id")
    worker_postgres.execute("INSERT INTO shade (color) VALUES (%s)", new.fetchone())
    record(schema=worker_postgres_schema, worker=os.environ.get("PYTEST_XDIST_WORKER"))
