"""The SQLite fixtures: a worker's file, production PRAGMAs everywhere, a reset after each test."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.sqlite.conftest import BOOKS
from worker_utils import sqlite
from worker_utils.sqlite import WorkerDatabase

PRAGMAS = {"journal_mode": "wal", "foreign_keys": 1, "synchronous": 1, "busy_timeout": 5000}


def _pragmas(conn: sqlite3.Connection) -> dict[str, object]:
    return {name: conn.execute(f"PRAGMA {name}").fetchone()[0] for name in PRAGMAS}


def _books(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT count(*) FROM book").fetchone()[0])


def test_the_fixture_connection_has_the_production_pragmas(
    worker_sqlite: sqlite3.Connection,
) -> None:
    assert _pragmas(worker_sqlite) == PRAGMAS


Opener = Callable[[WorkerDatabase], sqlite3.Connection]


def _by_helper(database: WorkerDatabase) -> sqlite3.Connection:
    return sqlite.connect(database.path)


def _by_sqlalchemy_listener(database: WorkerDatabase) -> sqlite3.Connection:
    # What SQLAlchemy's pool does with a "connect" listener: call it on each new connection.
    conn = sqlite3.connect(database.url.removeprefix("sqlite:///"))
    sqlite.on_connect(conn, object())
    return conn


def _by_session_database(database: WorkerDatabase) -> sqlite3.Connection:
    return database.connect()


OPENERS = [_by_helper, _by_sqlalchemy_listener, _by_session_database]


@pytest.mark.parametrize("opener", OPENERS)
def test_connections_the_application_opens_get_the_production_pragmas(
    worker_sqlite_database: WorkerDatabase, opener: Opener
) -> None:
    conn = opener(worker_sqlite_database)
    try:
        assert _pragmas(conn) == PRAGMAS
    finally:
        conn.close()


def test_a_plain_connection_lacks_them_which_is_why_the_helpers_exist(
    worker_sqlite_path: Path,
) -> None:
    conn = sqlite3.connect(worker_sqlite_path)
    try:
        assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 0
    finally:
        conn.close()


@pytest.mark.parametrize("opener", OPENERS)
def test_foreign_keys_are_enforced_on_every_connection_the_helpers_open(
    worker_sqlite_database: WorkerDatabase, worker_sqlite_path: Path, opener: Opener
) -> None:
    conn = opener(worker_sqlite_database)
    try:
        with pytest.raises(sqlite3.IntegrityError) as excinfo:
            conn.execute("INSERT INTO book (title, author_id) VALUES ('Orphan', 99)")
        assert str(excinfo.value) == "FOREIGN KEY constraint failed"
    finally:
        conn.close()


def test_foreign_keys_are_enforced_on_the_fixture_connection(
    worker_sqlite: sqlite3.Connection,
) -> None:
    with pytest.raises(sqlite3.IntegrityError) as excinfo:
        worker_sqlite.execute("DELETE FROM author WHERE id = 2")
    assert str(excinfo.value) == "FOREIGN KEY constraint failed"


def test_the_file_is_in_the_worker_directory_and_the_url_names_it(
    worker_sqlite_path: Path, worker_sqlite_url: str, worker_tmp_path: Path
) -> None:
    assert worker_sqlite_path.parent == worker_tmp_path
    assert worker_sqlite_url == f"sqlite:///{worker_sqlite_path}"


# Each of these changes the data its own way; whichever runs later, in any order,
# must still start from the template's rows.
@pytest.mark.parametrize(("n", "commit"), [(1, False), (2, True), (3, False), (4, True)])
def test_a_test_on_the_fixture_connection_starts_from_the_template(
    worker_sqlite: sqlite3.Connection, n: int, commit: bool
) -> None:
    assert _books(worker_sqlite) == BOOKS
    worker_sqlite.execute("INSERT INTO book (title, author_id) VALUES ('Always Coming Home', 1)")
    worker_sqlite.execute("CREATE TABLE scratch (x)")
    if commit:
        worker_sqlite.commit()


@pytest.mark.parametrize(("n", "how"), [(1, "helper"), (2, "url"), (3, "helper"), (4, "url")])
def test_a_test_whose_application_commits_starts_from_the_template(
    worker_sqlite_path: Path, worker_sqlite_url: str, n: int, how: str
) -> None:
    path = worker_sqlite_path if how == "helper" else worker_sqlite_url.removeprefix("sqlite:///")
    with sqlite.connect(path) as conn:
        assert _books(conn) == BOOKS
        conn.execute("DELETE FROM book")
        conn.execute("CREATE TABLE scratch (x)")
    conn.close()


def test_the_fixture_connection_sees_what_the_application_committed(
    worker_sqlite: sqlite3.Connection, worker_sqlite_path: Path
) -> None:
    # Beside worker_sqlite_path the connection is a plain one, not a snapshot in a transaction.
    assert _books(worker_sqlite) == BOOKS
    with sqlite.connect(worker_sqlite_path) as conn:
        conn.execute("INSERT INTO book (title, author_id) VALUES ('His Master''s Voice', 2)")
    conn.close()
    assert _books(worker_sqlite) == BOOKS + 1
