"""A connection pooler (PgBouncer) between the run and PostgreSQL: found, and refused when it
would break what each worker's session holds.

A worker's search path and lock timeout travel in the ``options`` of its URL and
live in the session; its liveness lock is a session advisory lock. A pooler
that hands a client's next transaction to another server connection
(PgBouncer's ``pool_mode = transaction`` or ``statement``) loses all three, and
one that drops or refuses ``options`` loses the search path.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from worker_utils._util import mask_password
from worker_utils.postgres._dsn import connect, first_line, namespace_dsn, psycopg_module
from worker_utils.postgres._errors import PostgresError

if TYPE_CHECKING:
    import psycopg

__all__ = ["check_pooler"]

# What the probe asks the options to set: no worker's names, a value no server has.
_PROBE_PATH = ("worker_utils_probe", "public")
_PROBE_LOCK_TIMEOUT = "4321ms"
# Transactions the first client runs after the second took a server connection.
_PROBE_TRANSACTIONS = 3


def _backend_pid(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT pg_backend_pid()").fetchone()
    assert row is not None
    return int(row[0])


def check_pooler(url: str, *, setting: str, kind: str | None) -> None:
    """Refuse a pooler at ``url`` that would not keep each worker's session its own.

    A pooler is found by the backend pid: PostgreSQL tells a client its own in
    the handshake, a pooler makes one up. Behind one, two clients are opened
    and the first one runs a few transactions: under session pooling the
    second client never gets the first one's server connection and the first
    always keeps it; under transaction or statement pooling, the server
    connection the first client just released goes to the second (PgBouncer
    reuses the last one released), or the first client's transactions move.
    Then, for ``kind`` ``"schema"``, a connection with a search path in its
    ``options`` must see it, twice (the second on a reused server connection);
    for ``"database"``, ``options`` must at least be accepted; for None
    (reaping) nothing more is needed.

    Raises:
        PostgresError: A pooler that pools per transaction or statement, or
            that refuses ``options`` or (schema mode) drops them, or a server
            that refuses a connection; the message names the setting to change.
    """
    psycopg = psycopg_module()
    server = mask_password(url)
    try:
        problem = _pooling(url)
        if problem == "":
            return  # PostgreSQL itself
        if problem is None and kind is not None:
            problem = _options(url, kind)
    except psycopg.OperationalError as exc:
        words = _words(exc)
        if "startup parameter" not in words:
            raise PostgresError(
                f"{setting}: cannot connect to {server} ({words}); start the server or point "
                f"{setting} at one that accepts connections"
            ) from None
        fix = (
            "add ignore_startup_parameters = options to the pooler's configuration (pgbouncer.ini)"
        )
        if kind == "schema":
            fix = f"set worker_utils_postgres_mode = database and {fix}"
        problem = (
            f"refuses the options startup parameter of worker URLs (it answered: {words}); {fix}"
        )
    if problem:
        raise PostgresError(
            f"{setting}: {server} is a connection pooler that {problem}, or point {setting} at "
            f"PostgreSQL itself"
        )


def _pooling(url: str) -> str | None:
    """What is wrong with the pooling of a pooler at ``url``: None for session pooling, and
    ``""`` when there is no pooler."""
    with connect(url, autocommit=True) as first:
        pid = _backend_pid(first)
        if first.pgconn.backend_pid == pid:
            return ""
        with connect(url, autocommit=True) as second:
            taken = _backend_pid(second) == pid
            moved = any(_backend_pid(first) != pid for _ in range(_PROBE_TRANSACTIONS))
    if not (taken or moved):
        return None
    return (
        "gives one client's transactions to different server connections (PgBouncer's "
        "pool_mode = transaction or statement), but each worker's search path, lock timeout and "
        "liveness lock belong to its session; set pool_mode = session for this database in the "
        "pooler's configuration"
    )


def _options(url: str, kind: str) -> str | None:
    """What a pooler at ``url`` does wrong with the ``options`` of ``kind``'s worker URLs."""
    search_path = _PROBE_PATH if kind == "schema" else ()
    probe = namespace_dsn(url, search_path=search_path, lock_timeout=_PROBE_LOCK_TIMEOUT)
    for _ in range(2):  # the second connection gets the first one's server connection back
        with connect(probe, autocommit=True) as conn:
            row = conn.execute("SELECT current_setting('search_path')").fetchone()
        assert row is not None
        # As the server keeps it: "a,b" from options, "a, b" from SET.
        if search_path and [part.strip() for part in row[0].split(",")] != list(search_path):
            return (
                "drops the options startup parameter (PgBouncer's ignore_startup_parameters = "
                "options), which carries each worker's search path in schema mode; set "
                "worker_utils_postgres_mode = database, whose workers need no search path"
            )
    return None


def _words(exc: BaseException) -> str:
    """The server's own words in a failed connection's message, without libpq's preamble."""
    found = re.search(r"FATAL:\s+(.+)", str(exc))
    return found[1].strip() if found else first_line(exc)
