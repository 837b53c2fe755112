import pytest
from starlette.testclient import TestClient


@pytest.fixture(scope="session")
def worker_postgres_setup():
    def migrate(conn):
        conn.execute("CREATE TABLE visit (id serial PRIMARY KEY, name text NOT NULL)")

    return migrate


@pytest.fixture
def client():
    from service import app

    with TestClient(app) as client:
        yield client
