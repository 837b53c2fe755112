"""Reaping: dropping the namespaces whose owners are dead.

A namespace is ours to drop only if its comment is a worker_utils ownership
record naming it and the advisory lock its owner held is free.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from worker_utils.postgres._dsn import connect, namespace_dsn
from worker_utils.postgres._names import RECORD_PATTERN, parse_record
from worker_utils.postgres._namespace import drop_scratch, kind_of
from worker_utils.servers._process import owner_alive

if TYPE_CHECKING:
    import psycopg

__all__ = ["ReapResult", "drop_if_unlocked", "reap"]


@dataclass
class ReapResult:
    """What :func:`reap` dropped (or would drop) and what it kept, with the reason."""

    dropped: list[str] = field(default_factory=list)
    kept: list[tuple[str, str]] = field(default_factory=list)


def _owner_alive(owner: Mapping[str, Any]) -> bool:
    return owner.get("pid") != os.getpid() and owner_alive(owner) is True


def _records(conn: psycopg.Connection[Any]) -> Iterator[tuple[str, str, str | None]]:
    yield from conn.execute(
        """
        SELECT 'schema', n.nspname, d.description FROM pg_namespace n
        JOIN pg_description d ON d.objoid = n.oid AND d.classoid = 'pg_namespace'::regclass
        WHERE d.description LIKE %(pattern)s
        UNION ALL
        SELECT 'database', db.datname, shobj_description(db.oid, 'pg_database') FROM pg_database db
        WHERE shobj_description(db.oid, 'pg_database') LIKE %(pattern)s
        ORDER BY 2
        """,
        {"pattern": RECORD_PATTERN},
    )


def reap(
    url: str, *, dry_run: bool = False, log: Callable[[str], object] | None = None
) -> ReapResult:
    """Drop the namespaces worker_utils created on this server whose owners are dead.

    A namespace is dropped only if its comment is a worker_utils ownership
    record naming it, its owner's advisory lock is free (the owning connection
    is gone) and, when the owner ran on this host, its process has exited.
    Schemas are looked for in the database of ``url``; databases server-wide.

    Args:
        url: The server.
        dry_run: Report what would be dropped; drop nothing.
        log: Called with one line per namespace.
    """
    result = ReapResult()
    connections: dict[str, psycopg.Connection[Any]] = {}
    conn = connections[""] = connect(url, autocommit=True)
    try:
        current_db = conn.execute("SELECT current_database()").fetchone()[0]  # type: ignore[index]
        for kind, name, comment in list(_records(conn)):
            owner = parse_record(comment, kind, name)
            if owner is None:
                continue
            reason = _keep_reason(owner, current_db)
            if reason is None:
                lock_db = kind_of(kind).lock_database(owner, current_db)
                lock_conn = connections.get(lock_db)
                if lock_conn is None:
                    lock_conn = connections[lock_db] = connect(
                        namespace_dsn(url, dbname=lock_db), autocommit=True
                    )
                scratch = _unrecorded_scratch(conn, owner)
                reason = drop_if_unlocked(conn, lock_conn, owner, dry_run)
            if reason is None:
                result.dropped.append(name)
                if log:
                    verb = "would drop" if dry_run else "dropped"
                    log(f"{verb} {kind} {name}")
                    for database in scratch:
                        log(f"{verb} database {database} (scratch database of {name})")
            else:
                result.kept.append((name, reason))
                if log:
                    log(f"kept {kind} {name}: {reason}")
    finally:
        for each in connections.values():
            each.close()
    return result


def _unrecorded_scratch(conn: psycopg.Connection[Any], owner: Mapping[str, Any]) -> list[str]:
    """The scratch databases of ``owner`` that exist without a record of their own.

    The code under test made them; those with a record are reaped, and listed, on their own.
    """
    names = owner.get("scratch") or []
    if not names:
        return []
    rows = conn.execute(
        "SELECT datname FROM pg_database WHERE datname = ANY(%s)"
        " AND shobj_description(oid, 'pg_database') IS NULL ORDER BY 1",
        [list(names)],
    )
    return [row[0] for row in rows]


def _keep_reason(owner: Mapping[str, Any], current_db: str) -> str | None:
    reason = kind_of(owner["kind"]).foreign(owner, current_db)
    if reason is None and _owner_alive(owner):
        reason = f"its owner, process {owner['pid']} on this host, is alive"
    return reason


def drop_if_unlocked(
    conn: psycopg.Connection[Any],
    lock_conn: psycopg.Connection[Any],
    owner: Mapping[str, Any],
    dry_run: bool,
) -> str | None:
    """Drop the namespace of record ``owner`` if its lock is free; else say why not."""
    key = owner["lock"]
    if not lock_conn.execute("SELECT pg_try_advisory_lock(%s)", [key]).fetchone()[0]:  # type: ignore[index]
        return "its owner holds its lock"
    try:
        if not dry_run:
            drop_scratch(conn, owner.get("scratch") or [])
            kind_of(owner["kind"]).drop(conn, owner["name"])
    finally:
        lock_conn.execute("SELECT pg_advisory_unlock(%s)", [key])
    return None
