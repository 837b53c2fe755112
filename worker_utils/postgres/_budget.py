"""The server's connection budget: who holds its slots, and what a run needs.

Every connection worker_utils opens carries an ``application_name`` with its
worker's namespace name (``<prefix>_<run tag>_<worker id>``), and so do the
worker's URL and DSN: ``pg_stat_activity`` grouped by that name minus the
worker id tells each run's share of a shared server apart from the rest.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import psycopg

__all__ = [
    "PLUGIN_CONNECTIONS",
    "ServerUse",
    "budget_warning",
    "plugin_application_name",
    "read_server_use",
    "run_label",
]

#: Connections worker_utils itself holds per worker: its namespace's keeper.
PLUGIN_CONNECTIONS = 1
_MARK = " (worker_utils)"
_NAME_MAX = 63  # PostgreSQL cuts a longer application_name
# <prefix>_<run tag>_<worker id>, maybe _<scratch suffix>, maybe our mark (cut at 63 bytes).
_RUN_NAME = re.compile(
    r"(?P<run>[a-z_][a-z0-9_]*?)_(?:gw\d+|master|template)(?:_[a-z0-9_]+)?(?: \(.*)?"
)
_SHOWN_RUNS = 5


def plugin_application_name(name: str) -> str:
    """The ``application_name`` of a connection worker_utils opens for namespace ``name``."""
    return (name + _MARK)[:_NAME_MAX]


def run_label(application_name: str) -> str | None:
    """The run a connection belongs to, ``<prefix>_<run tag>``, from its application name."""
    match = _RUN_NAME.fullmatch(application_name)
    return match["run"] if match else None


@dataclass
class ServerUse:
    """How a server's connection slots are used, read from ``pg_stat_activity``."""

    max_connections: int
    #: ``superuser_reserved_connections`` plus ``reserved_connections`` (PostgreSQL 16+).
    reserved: int
    #: Client connections by run (``<prefix>_<run tag>``), and those of no run.
    by_run: dict[str, int] = field(default_factory=dict)
    other: int = 0

    @property
    def in_use(self) -> int:
        """Client connections open now."""
        return sum(self.by_run.values()) + self.other

    @property
    def free(self) -> int:
        """Slots a role without reserved ones may still take."""
        return max(0, self.max_connections - self.reserved - self.in_use)

    def describe(self, this_run: str | None = None) -> str:
        """``the server holds 97 of its 100 connections (3 reserved): this run test_worker_ab 20,
        run test_worker_cd 18, other 59``: the largest runs first."""
        runs = sorted(self.by_run.items(), key=lambda item: (item[0] != this_run, -item[1]))
        parts = [
            f"{'this run' if name == this_run else 'run'} {name} {count}"
            for name, count in runs[:_SHOWN_RUNS]
        ]
        rest = runs[_SHOWN_RUNS:]
        if rest:
            parts.append(f"{len(rest)} more runs {sum(count for _, count in rest)}")
        if self.other or not parts:
            parts.append(f"other {self.other}")
        return (
            f"the server holds {self.in_use} of its {self.max_connections} connections "
            f"({self.reserved} reserved): {', '.join(parts)}"
        )


def read_server_use(conn: psycopg.Connection[Any], *, exclude_self: bool = False) -> ServerUse:
    """Read the server's limits and its client connections, grouped by run.

    Args:
        exclude_self: Leave out ``conn`` itself (a connection opened only to ask).
    """
    row = conn.execute(
        """
        SELECT current_setting('max_connections')::int,
               current_setting('superuser_reserved_connections')::int
                 + coalesce(current_setting('reserved_connections', true)::int, 0)
        """
    ).fetchone()
    assert row is not None
    # A role without pg_read_all_stats sees other roles' sessions with their
    # backend_type hidden: those in a database are clients (background processes are not).
    rows = conn.execute(
        """
        SELECT application_name, count(*) FROM pg_stat_activity
        WHERE (backend_type = 'client backend' OR (backend_type IS NULL AND datid IS NOT NULL))
          AND (NOT %s OR pid <> pg_backend_pid())
        GROUP BY 1
        """,
        [exclude_self],
    ).fetchall()
    runs: Counter[str] = Counter()
    other = 0
    for name, count in rows:
        label = run_label(name or "")
        if label is None:
            other += count
        else:
            runs[label] += count
    return ServerUse(row[0], row[1], dict(runs), other)


def budget_warning(use: ServerUse, workers: int, app_connections: int) -> str | None:
    """The warning for a run of ``workers`` the server cannot hold, or None if it can.

    A run needs ``workers x (PLUGIN_CONNECTIONS + app_connections)`` slots.
    """
    needed = workers * (PLUGIN_CONNECTIONS + app_connections)
    if needed <= use.free:
        return None
    return (
        f"worker_utils: this run needs about {needed} PostgreSQL connections ({workers} "
        f"worker(s) x ({PLUGIN_CONNECTIONS} of worker_utils + {app_connections} of "
        f"worker_utils_postgres_app_connections)) and the server has {use.free} free "
        f"(max_connections {use.max_connections}, {use.reserved} reserved, {use.in_use} in "
        f"use); run fewer workers (-n), raise max_connections, or put a pooler such as "
        f"PgBouncer in session mode in front of the server"
    )
