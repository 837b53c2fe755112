"""The template every SQLite test starts from, and inner runs of the example suites."""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).parent / "examples"
AUTHORS = 2
BOOKS = 3


@pytest.fixture(scope="session")
def worker_sqlite_setup() -> Callable[[sqlite3.Connection], None]:
    def migrate(conn: sqlite3.Connection) -> None:
        conn.execute("CREATE TABLE author (id INTEGER PRIMARY KEY, name TEXT NOT NULL)")
        conn.execute(
            "CREATE TABLE book (id INTEGER PRIMARY KEY, title TEXT NOT NULL,"
            " author_id INTEGER NOT NULL REFERENCES author (id))"
        )
        conn.executemany(
            "INSERT INTO author (id, name) VALUES (?, ?)", [(1, "Le Guin"), (2, "Lem")]
        )
        conn.executemany(
            "INSERT INTO book (title, author_id) VALUES (?, ?)",
            [("The Dispossessed", 1), ("Solaris", 2), ("Fiasco", 2)],
        )

    return migrate


@pytest.fixture
def example(pytester: pytest.Pytester) -> Callable[..., Path]:
    """Copy ``examples/<name>.py`` into the pytester directory as a test module, with an ini."""

    def copy(name: str, ini: str = "") -> Path:
        shutil.copy(EXAMPLES / f"{name}.py", pytester.path / f"test_{name}.py")
        (pytester.path / "pytest.ini").write_text(f"[pytest]\n{ini}")
        return pytester.path

    return copy
