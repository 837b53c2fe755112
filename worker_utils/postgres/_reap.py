"""Reaping: dropping the namespaces whose owners are dead.

A namespace is ours to drop only if its comment is a worker_utils ownership
record naming it and the advisory lock its owner held is free.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from worker_utils.postgres._dsn import connect
from worker_utils.postgres._names import RECORD_PATTERN, parse_record
from worker_utils.postgres._namespace import drop_scratch, kind_of, owner_lock
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
    url: str,
    *,
    dry_run: bool = False,
    log: Callable[[str], object] | None = None,
    application_name: str | None = None,
    slot_wait: float = 0.0,
) -> ReapResult:
    """Drop the namespaces worker_utils created on this server whose owners are dead.

    A namespace is dropped only if its comment is a worker_utils ownership
    record naming it, its owner's advisory lock is free (the owning connection
    is gone) and, when the owner ran on this host, its process has exited. A
    run's template is kept, besides, while a worker of its run is alive.
    Schemas are looked for in the database of ``url``; databases server-wide.

    Args:
        url: The server.
        dry_run: Report what would be dropped; drop nothing.
        log: Called with one line per namespace.
        application_name: Of the connections the reaper opens.
        slot_wait: Seconds each connection waits for a free slot on a full server.
    """
    result = ReapResult()
    with connect(url, autocommit=True, wait=slot_wait, application_name=application_name) as conn:
        current_db = conn.execute("SELECT current_database()").fetchone()[0]  # type: ignore[index]
        found = [
            (kind, name, owner)
            for kind, name, comment in list(_records(conn))
            if (owner := parse_record(comment, kind, name)) is not None
        ]
        # Templates last: a worker's lock may live in its own database, out of the template's
        # sight, so a template is kept while any namespace of its run is found alive.
        found.sort(key=lambda item: bool(item[2].get("template")))
        live_runs: set[str | None] = set()
        for kind, name, owner in found:
            scratch: list[str] = []
            reason = kind_of(kind).foreign(owner, current_db)
            if reason is None:
                reason = _alive_reason(owner, live_runs)
                if reason is None:
                    scratch = _unrecorded_scratch(conn, owner)
                    reason = drop_if_unlocked(
                        url, conn, current_db, owner, dry_run, application_name, slot_wait
                    )
                if reason is not None:
                    live_runs.add(owner.get("run"))
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


def _alive_reason(owner: Mapping[str, Any], live_runs: set[str | None]) -> str | None:
    if _owner_alive(owner):
        return f"its owner, process {owner['pid']} on this host, is alive"
    if owner.get("template") and owner.get("run") in live_runs:
        return "a worker of its run is alive"
    return None


def drop_if_unlocked(
    url: str,
    conn: psycopg.Connection[Any],
    current_db: str,
    owner: Mapping[str, Any],
    dry_run: bool,
    application_name: str | None = None,
    slot_wait: float = 0.0,
) -> str | None:
    """Drop the namespace of record ``owner`` if its lock is free; else say why not.

    Args:
        conn: An autocommit connection to ``current_db`` on the server ``url``.
    """
    with owner_lock(url, conn, current_db, owner, application_name, slot_wait) as held:
        if held is not None:
            return held
        if not dry_run:
            drop_scratch(conn, owner.get("scratch") or [])
            kind_of(owner["kind"]).drop(conn, owner["name"])
    return None
