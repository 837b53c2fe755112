"""A setup that fails with an SQLite error, and a test that leaves a write lock behind."""

import os

import pytest

from worker_utils import sqlite

LEFT_OPEN = []


@pytest.fixture(scope="session")
def worker_sqlite_setup():
    def setup(conn):
        conn.execute("CREATE TABLE item (id INTEGER PRIMARY KEY)")
        if os.environ.get("WU_TEST_BAD_SETUP"):
            conn.execute("INSERT INTO nowhere VALUES (1)")

    return setup


def test_leaves_a_transaction_open(worker_sqlite_path):
    conn = sqlite.connect(worker_sqlite_path)
    conn.execute("INSERT INTO item VALUES (1)")
    conn.commit()
    conn.execute("INSERT INTO item VALUES (2)")
    LEFT_OPEN.append(conn)  # neither committed nor closed


@pytest.fixture
def leftover_closed():
    LEFT_OPEN.pop().close()


def test_after_it(leftover_closed, worker_sqlite):
    assert worker_sqlite.execute("SELECT count(*) FROM item").fetchone()[0] == 0
