"""SQLite files per worker, opened with production PRAGMAs.

The behaviour that breaks in production (WAL readers beside a writer,
``database is locked``, foreign keys that SQLite leaves off by default) shows
only on a file opened with the production PRAGMAs, and most PRAGMAs hold for
one connection only. :func:`connect` and :func:`on_connect` apply them to
connections the application opens itself; the fixtures apply them to theirs.

A :class:`WorkerDatabase` is one worker's file, copied from a template built
once per run, and put back in the template's state after each test.
"""

from __future__ import annotations

import re
import shutil
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from worker_utils.errors import WorkerUtilsError

__all__ = [
    "DEFAULT_PRAGMAS",
    "RESET_MODES",
    "SqliteError",
    "WorkerDatabase",
    "build_template",
    "connect",
    "current_pragmas",
    "on_connect",
    "parse_pragmas",
]

Pragmas = tuple[tuple[str, str], ...]

#: What production services run with: readers never wait for a writer, foreign
#: keys are checked, commits do not fsync the WAL, a locked file is retried.
DEFAULT_PRAGMAS: Pragmas = (
    ("journal_mode", "WAL"),
    ("foreign_keys", "ON"),
    ("synchronous", "NORMAL"),
    ("busy_timeout", "5000"),
)
RESET_MODES = ("transaction", "restore", "none")
_NAME = re.compile(r"[a-z_]+")
_VALUE = re.compile(r"-?[A-Za-z0-9_]+")

_pragmas: Pragmas = DEFAULT_PRAGMAS


class SqliteError(WorkerUtilsError, RuntimeError):
    """A worker's SQLite file could not be set up or put back in its template state."""


def parse_pragmas(text: str) -> Pragmas:
    """Return the PRAGMAs in ``text``: ``name=value`` pairs separated by spaces or commas.

    Raises:
        ValueError: A pair is malformed; the message names it.
    """
    pragmas = []
    for item in re.split(r"[\s,]+", text.strip()):
        if not item:
            continue
        name, _, value = item.partition("=")
        name = name.strip().lower()
        if not _NAME.fullmatch(name) or not _VALUE.fullmatch(value.strip()):
            raise ValueError(f"{item!r} is not name=value")
        pragmas.append((name, value.strip()))
    return tuple(pragmas)


def current_pragmas() -> Pragmas:
    """Return the PRAGMAs :func:`connect` and :func:`on_connect` apply by default.

    :data:`DEFAULT_PRAGMAS`, unless the pytest plugin set the configured ones
    (``worker_utils_sqlite_pragmas``) for this run.
    """
    return _pragmas


def _set_pragmas(pragmas: Pragmas) -> None:
    global _pragmas
    _pragmas = pragmas


def apply_pragmas(connection: Any, pragmas: Iterable[tuple[str, str]] | None = None) -> None:
    """Run each PRAGMA on ``connection``, a DB-API connection to SQLite.

    Names and values were checked by :func:`parse_pragmas`: PRAGMA takes no
    bound parameters, so they are written into the statement.
    """
    cursor = connection.cursor()
    try:
        for name, value in current_pragmas() if pragmas is None else pragmas:
            cursor.execute(f"PRAGMA {name} = {value}")
    finally:
        cursor.close()


def connect(
    path: str | Path, *, pragmas: Sequence[tuple[str, str]] | None = None, **kwargs: Any
) -> sqlite3.Connection:
    """Open ``path`` with :func:`sqlite3.connect` and apply the PRAGMAs.

    Args:
        path: The database file.
        pragmas: ``(name, value)`` pairs; :func:`current_pragmas` by default.
        kwargs: Passed to :func:`sqlite3.connect`.
    """
    connection: sqlite3.Connection = sqlite3.connect(path, **kwargs)
    try:
        apply_pragmas(connection, pragmas)
    except BaseException:
        connection.close()
        raise
    return connection


def on_connect(dbapi_connection: Any, connection_record: object = None) -> None:
    """Apply :func:`current_pragmas` to a new connection: an SQLAlchemy ``connect`` listener.

    ``sqlalchemy.event.listen(engine, "connect", worker_utils.sqlite.on_connect)``
    gives every connection of the engine's pool the PRAGMAs the fixtures use.
    """
    apply_pragmas(dbapi_connection)


def build_template(path: str | Path, setup: Callable[[sqlite3.Connection], object] | None) -> str:
    """Create the template file at ``path``, run ``setup`` on it, commit; return the path.

    The write-ahead log is folded into the file, so that copying the file alone
    copies everything.
    """
    path = Path(path)
    path.unlink(missing_ok=True)
    connection = connect(path)
    try:
        if setup is not None:
            setup(connection)
        connection.commit()
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    except sqlite3.Error as exc:
        raise SqliteError(f"worker_sqlite_setup: the setup failed on the template: {exc}") from exc
    finally:
        connection.close()
    return str(path)


class _Busy(WorkerUtilsError):
    """The restore gave up on a locked file."""


def _give_up_when_busy(status: int, remaining: int, total: int) -> None:
    # The destination's busy handler has waited busy_timeout already; Python's
    # backup loop would retry forever.
    if status in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
        raise _Busy


class WorkerDatabase:
    """One worker's SQLite file, a copy of the run's template, and its reset.

    Attributes:
        path: The file, private to this worker and run.
        url: ``sqlite:///<path>`` for SQLAlchemy and other URL takers.
    """

    def __init__(self, path: Path, template: str | Path) -> None:
        self.path = path
        self.url = f"sqlite:///{path}"
        for suffix in ("-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        shutil.copyfile(template, path)
        self.connection = connect(path, check_same_thread=False)
        # The template's pages, kept in memory: the restore writes them back
        # through the SQLite backup API, so open connections see them at once.
        self._pristine = sqlite3.connect(":memory:", check_same_thread=False)
        # PRAGMA data_version moves when another connection commits: this one
        # tells whether anything, the fixture's connection included, committed.
        self._watch = connect(path, check_same_thread=False)
        self.rebase()

    #: Made and reset by another process of this worker (see :meth:`borrow`).
    borrowed = False

    @classmethod
    def borrow(cls, path: Path) -> WorkerDatabase:
        """The database another process of this worker made at ``path``, to use here.

        Its connection is this process's own; the process that made the file
        restores it after each test and keeps it: :meth:`close` here closes the
        connection only.
        """
        database = cls.__new__(cls)
        database.path = path
        database.url = f"sqlite:///{path}"
        database.connection = connect(path, check_same_thread=False)
        database.borrowed = True
        return database

    def _data_version(self) -> int:
        return int(self._watch.execute("PRAGMA data_version").fetchone()[0])

    def mark(self) -> None:
        """Remember the file's state as the template's: :meth:`changed` compares with it."""
        self._version = self._data_version()

    def changed(self) -> bool:
        """Return whether any connection committed to the file since :meth:`mark`."""
        return self._data_version() != self._version

    def connect(self, **kwargs: Any) -> sqlite3.Connection:
        """Open a new connection on this worker's file, with the PRAGMAs applied."""
        return connect(self.path, **kwargs)

    def begin(self) -> sqlite3.Connection:
        """Start the transaction a ``transaction``-mode test runs in; return the connection."""
        if self.connection.in_transaction:
            self.connection.rollback()
        self.connection.execute("BEGIN")
        return self.connection

    def reset(self, *, restore: bool = True) -> bool:
        """Undo the test: roll back the fixture's connection, restore if anything committed.

        Args:
            restore: False to roll back only, keeping what was committed.

        Returns:
            Whether the file was restored.
        """
        if self.connection.in_transaction:
            self.connection.rollback()
        if not restore or not self.changed():
            return False
        self.restore()
        return True

    def restore(self) -> None:
        """Put the file back in the template's state, whatever committed to it.

        Raises:
            SqliteError: A connection the test left open still holds a write
                lock on the file after the busy timeout.
        """
        if self.connection.in_transaction:
            self.connection.rollback()
        try:
            self._pristine.backup(self.connection, progress=_give_up_when_busy)
        except _Busy:
            raise SqliteError(
                f"worker_sqlite: could not restore {self.path}: a connection the test opened "
                f"still holds a write transaction; commit or close it before the test ends"
            ) from None
        self.mark()

    def rebase(self) -> None:
        """Take the file's state now as the one :meth:`restore` puts back."""
        if self.connection.in_transaction:
            self.connection.rollback()
        self.connection.backup(self._pristine)
        self.mark()

    def close(self) -> None:
        """Close the fixture's connections; the file stays until the run directory goes."""
        self.connection.close()
        if not self.borrowed:
            self._pristine.close()
            self._watch.close()
