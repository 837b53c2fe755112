"""What the production PRAGMAs are for, shown on the worker's real file."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest

from tests.sqlite.conftest import BOOKS
from worker_utils import sqlite

INSERT = "INSERT INTO book (title, author_id) VALUES ('The Lathe of Heaven', 1)"


def _books(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT count(*) FROM book").fetchone()[0])


def test_a_reader_sees_committed_rows_while_a_writer_holds_a_transaction(
    worker_sqlite_path: Path,
) -> None:
    writer = sqlite.connect(worker_sqlite_path, isolation_level=None)
    reader = sqlite.connect(worker_sqlite_path, isolation_level=None)
    try:
        assert writer.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        writer.execute("BEGIN IMMEDIATE")
        writer.execute(INSERT)
        reader.execute("BEGIN")
        assert _books(reader) == BOOKS  # not blocked, and not the uncommitted row
        # With a rollback journal this commit would wait for the reader to finish.
        writer.execute("COMMIT")
        assert _books(reader) == BOOKS  # the reader keeps its snapshot
        reader.execute("COMMIT")
        assert _books(reader) == BOOKS + 1
    finally:
        writer.close()
        reader.close()


def _hold_write_lock(path: Path, seconds: float, locked: threading.Event) -> None:
    conn = sqlite.connect(path, isolation_level=None, check_same_thread=False)
    try:
        conn.execute("BEGIN IMMEDIATE")
        locked.set()
        time.sleep(seconds)
        conn.execute("COMMIT")
    finally:
        conn.close()


def test_a_second_writer_waits_within_the_busy_timeout_instead_of_failing(
    worker_sqlite_path: Path,
) -> None:
    locked = threading.Event()
    holder = threading.Thread(target=_hold_write_lock, args=(worker_sqlite_path, 0.2, locked))
    holder.start()
    second = sqlite.connect(worker_sqlite_path, isolation_level=None)
    try:
        assert locked.wait(5)
        started = time.monotonic()
        second.execute("BEGIN IMMEDIATE")
        waited = time.monotonic() - started
        second.execute(INSERT)
        second.execute("COMMIT")
    finally:
        holder.join()
        second.close()
    assert 0.1 < waited < 5


def test_without_a_busy_timeout_the_second_writer_fails_at_once(worker_sqlite_path: Path) -> None:
    locked = threading.Event()
    holder = threading.Thread(target=_hold_write_lock, args=(worker_sqlite_path, 0.2, locked))
    holder.start()
    # timeout=0: sqlite3.connect sets a busy timeout of its own (5 s) otherwise.
    second = sqlite.connect(
        worker_sqlite_path, pragmas=[("busy_timeout", "0")], timeout=0, isolation_level=None
    )
    try:
        assert locked.wait(5)
        with pytest.raises(sqlite3.OperationalError) as excinfo:
            second.execute("BEGIN IMMEDIATE")
        assert str(excinfo.value) == "database is locked"
    finally:
        holder.join()
        second.close()
