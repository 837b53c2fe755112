"""The errors of the PostgreSQL package."""

from __future__ import annotations

from worker_utils.errors import WorkerUtilsError

__all__ = ["NamespaceNotOursError", "PostgresError"]


class PostgresError(WorkerUtilsError, RuntimeError):
    """A PostgreSQL setting, server or namespace is not usable; the message says what to do."""


class NamespaceNotOursError(PostgresError):
    """A namespace with the name worker_utils needs exists and has no worker_utils record."""
