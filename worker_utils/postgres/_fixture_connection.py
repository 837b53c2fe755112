"""The psycopg connection classes the fixtures hand to tests.

Imported only when a fixture opens a connection: it imports psycopg. In a
transaction-mode test the fixture began the transaction the test runs in, so
psycopg would refuse to switch to autocommit ("can't change 'autocommit'
now"). These classes let the test switch: what the test did so far is
committed (its later statements see it, as they would on a connection of its
own), the fixture's transaction ends, and :attr:`committed` tells the fixture
to undo the test with a delete reset instead of a rollback.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.pq import TransactionStatus

__all__ = ["FixtureAsyncConnection", "FixtureConnection"]

_OPEN = (TransactionStatus.INTRANS, TransactionStatus.INERROR)


class FixtureConnection(psycopg.Connection[Any]):
    """A connection that records commits and may leave the fixture's transaction."""

    #: The open transaction is the fixture's (a transaction-mode test).
    fixture_transaction = False
    #: The test committed (or switched to autocommit) since the fixture last cleared it.
    committed = False

    def commit(self) -> None:
        self.committed = True
        super().commit()

    @property
    def autocommit(self) -> bool:
        """The autocommit state; switching it on ends the fixture's transaction."""
        return bool(super().autocommit)

    @autocommit.setter
    def autocommit(self, value: bool) -> None:
        self._leave_fixture_transaction(value)
        psycopg.Connection.autocommit.fset(self, value)  # type: ignore[attr-defined]

    def set_autocommit(self, value: bool) -> None:
        """Method version of the ``autocommit`` setter."""
        self._leave_fixture_transaction(value)
        super().set_autocommit(value)

    def _leave_fixture_transaction(self, value: bool) -> None:
        if value and self.fixture_transaction:
            if self.pgconn.transaction_status in _OPEN:
                self.commit()
            self.fixture_transaction = False


class FixtureAsyncConnection(psycopg.AsyncConnection[Any]):
    """The async twin: ``await conn.set_autocommit(True)`` ends the fixture's transaction."""

    fixture_transaction = False

    async def set_autocommit(self, value: bool) -> None:
        """Switch autocommit; switching it on commits the fixture's transaction first."""
        if value and self.fixture_transaction:
            if self.pgconn.transaction_status in _OPEN:
                await self.commit()
            self.fixture_transaction = False
        await super().set_autocommit(value)
