"""Tests that leave a connection idle in a transaction holding locks, and use extension types."""

import psycopg

LEAKED = []


def test_leaks_a_connection_idle_in_a_transaction(worker_postgres_dsn):
    conn = psycopg.connect(worker_postgres_dsn)
    conn.execute("CREATE TABLE held (id int)")
    conn.execute("INSERT INTO held VALUES (1)")
    LEAKED.append(conn)  # never committed, never closed: its locks block a DROP


def test_an_extension_typed_column_works_in_the_worker_schema(worker_postgres):
    worker_postgres.execute("CREATE TABLE person (name citext PRIMARY KEY)")
    worker_postgres.execute("INSERT INTO person VALUES ('Ann')")
    assert worker_postgres.execute("SELECT count(*) FROM person WHERE name = 'ANN'").fetchone() == (
        1,
    )
    # An unqualified name resolves to the worker's table, never to public.person.
    schema = worker_postgres.execute(
        "SELECT relnamespace::regnamespace::text FROM pg_class WHERE oid = 'person'::regclass"
    ).fetchone()[0]
    assert schema == worker_postgres.execute("SELECT current_schema()").fetchone()[0]
    assert worker_postgres.execute("SELECT name FROM person").fetchall() == [("Ann",)]
