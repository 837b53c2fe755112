import pytest


@pytest.fixture(scope="session")
def worker_postgres_setup():
    def migrate(conn):
        conn.execute("CREATE TABLE visit (id serial PRIMARY KEY, name text NOT NULL)")

    return migrate
