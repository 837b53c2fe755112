"""The connections the fixtures hand to tests: one shared per worker, and async ones per block."""

from __future__ import annotations

import contextlib
import select
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from worker_utils.postgres._dsn import connect, psycopg_module

if TYPE_CHECKING:
    import psycopg

    from worker_utils.postgres._fixture_connection import FixtureConnection
    from worker_utils.postgres._namespace import WorkerNamespace

__all__ = ["AsyncConnector", "SharedConnection"]

_CONNECTION_OK = 0  # libpq's CONNECTION_OK, psycopg.pq.ConnStatus.OK


class SharedConnection:
    """The psycopg connection one worker's tests share, begun and ended around each test.

    Reusing one connection saves a connect (several milliseconds) per test. In
    a transaction-mode test it is inside ``BEGIN`` ... ``ROLLBACK`` sent straight
    through libpq: ``Connection.rollback()`` would also empty psycopg's
    prepared-statement cache, which costs about 0.4 ms in the next test. The
    ``ROLLBACK`` of one test and the ``BEGIN`` of the next are sent together as
    the test ends; their results are read as the next test begins, so no test
    waits for that round trip. A test that commits, or switches the connection
    to autocommit (which commits what it did so far), is reported by
    :meth:`end` so that a delete reset undoes it.
    """

    def __init__(self, namespace: WorkerNamespace) -> None:
        self.namespace = namespace
        self._conn: FixtureConnection | None = None
        self._begun = False  # a BEGIN sent ahead, with the previous test's ROLLBACK
        self._pending = False  # ... whose results are still to be read
        #: The backend pid of the connection, once opened.
        self.pid: int | None = None

    def _open(self) -> FixtureConnection:
        from worker_utils.postgres._fixture_connection import FixtureConnection

        conn = connect(
            self.namespace.dsn, wait=self.namespace.slot_wait, connection_class=FixtureConnection
        )
        assert isinstance(conn, FixtureConnection)
        self._begun = False
        # Not libpq's backend_pid: behind a pooler that is the pooler's, not the server's.
        self.pid = int(conn.pgconn.exec_(b"SELECT pg_backend_pid()").get_value(0, 0) or 0)
        self.namespace.own_pids.add(self.pid)  # a reset never ends it
        return conn

    def begin(self, *, transaction: bool) -> FixtureConnection:
        """Return the connection, inside a transaction if ``transaction``."""
        psycopg = psycopg_module()
        conn = self._conn
        if conn is not None and self._pending:
            self._pending = False
            self._begun = self._collect(conn) and self._begun
        if conn is None or conn.closed or conn.broken or conn.pgconn.status != _CONNECTION_OK:
            self.close()
            conn = self._conn = self._open()
        conn.committed = False
        conn.fixture_transaction = transaction
        # The pgconn's own status: conn.info builds a new object at every call.
        in_transaction = conn.pgconn.transaction_status == psycopg.pq.TransactionStatus.INTRANS
        if transaction:
            if not (self._begun and in_transaction) and not self._raw(conn, b"BEGIN"):
                conn.execute("BEGIN")
        elif self._begun and in_transaction:
            self._raw(conn, b"ROLLBACK")
        self._begun = False
        return conn

    def end(self, *, transaction: bool) -> bool:
        """Roll back what the test left open; return True if its writes may have been committed."""
        psycopg = psycopg_module()
        status = psycopg.pq.TransactionStatus
        conn = self._conn
        if conn is None or conn.closed or conn.broken:
            self.close()
            return transaction  # closed by the test: a commit cannot be ruled out
        escaped = transaction and conn.committed
        conn.fixture_transaction = False
        if conn.pgconn.transaction_status == status.ACTIVE:
            conn.cancel_safe()  # a query still running: stop it rather than wait
        if conn.pgconn.transaction_status in (status.INTRANS, status.INERROR):
            if transaction and not conn.autocommit:
                # Its results are read when the next test begins: by then the
                # server is long done, and this test does not wait a round trip.
                self._begun = self._pending = self._send(conn, b"ROLLBACK; BEGIN")
            if not self._begun:
                conn.rollback()
        elif transaction:
            escaped = True  # the test committed (or rolled back) the outer transaction
        if conn.autocommit:
            conn.autocommit = False
            escaped = escaped or transaction
        return escaped

    @staticmethod
    def _send(conn: psycopg.Connection[Any], command: bytes) -> bool:
        pgconn = conn.pgconn
        try:
            pgconn.send_query(command)
            while pgconn.flush():  # a non-blocking connection: wait until all is sent
                select.select([], [pgconn.socket], [])
        except psycopg_module().OperationalError:
            return False
        return True

    @staticmethod
    def _collect(conn: psycopg.Connection[Any]) -> bool:
        """Read the results of what :meth:`_send` sent; True if every command succeeded."""
        ok = True
        try:
            while (result := conn.pgconn.get_result()) is not None:
                ok = ok and result.status == psycopg_module().pq.ExecStatus.COMMAND_OK
        except psycopg_module().OperationalError:
            return False
        return ok

    @staticmethod
    def _raw(conn: psycopg.Connection[Any], command: bytes) -> bool:
        result = conn.pgconn.exec_(command)
        return bool(result.status == psycopg_module().pq.ExecStatus.COMMAND_OK)

    def close(self) -> None:
        """Close the connection, if open."""
        self._pending = self._begun = False
        self.namespace.own_pids.discard(self.pid or 0)
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class AsyncConnector:
    """Opens psycopg ``AsyncConnection``\\ s in a worker's namespace, inside the test's event loop.

    ``async with connector() as conn:`` yields a connection; in a
    transaction-mode test it is inside ``BEGIN`` and everything it did is rolled
    back when the block ends. ``await conn.set_autocommit(True)`` commits that
    transaction instead, and the test is undone by a delete reset.
    """

    def __init__(self, namespace: WorkerNamespace, *, transaction: bool) -> None:
        self.namespace = namespace
        self.transaction = transaction
        #: True once a block may have committed (a transaction-mode test that committed).
        self.leaked = False

    @contextlib.asynccontextmanager
    async def __call__(self, **kwargs: Any) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """Open a connection for the ``async with`` block; ``kwargs`` go to ``connect``."""
        psycopg = psycopg_module()
        from worker_utils.postgres._fixture_connection import FixtureAsyncConnection

        conn = await FixtureAsyncConnection.connect(self.namespace.dsn, **kwargs)
        try:
            if self.transaction:
                # Begun here, so that the code under test's transaction() is a savepoint.
                await conn.execute("SELECT 'worker_utils: begin'")
                conn.fixture_transaction = True
            yield conn
        finally:
            idle = conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
            if self.transaction and (idle or conn.autocommit):
                self.leaked = True
            await conn.close()  # the server rolls back what was not committed
