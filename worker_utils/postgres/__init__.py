"""Per-worker PostgreSQL namespaces: names, ownership records, creation, reset, reaping, preflight.

A worker gets a schema (or, in database mode, a database) named
``<prefix>_<run tag>_<worker id>``: unique per worker and per run, so
concurrent runs and CI shards can share one server. Every namespace made here
carries an ownership record (a JSON comment on the schema or database) and its
owner holds a session advisory lock for as long as it lives: a namespace whose
record is ours and whose lock is free belongs to a dead worker and may be
dropped. Nothing without such a record is ever dropped, truncated or emptied.

The modules, in the order a namespace meets them:

- ``_names``: names, ownership records, lock keys.
- ``_dsn``: importing psycopg, connection strings, connecting.
- ``_urls``: a worker's own URL, and its form for other drivers (no psycopg).
- ``_preflight``: the check of a configured server before the run; ``_pooler``: of a
  connection pooler (PgBouncer) in front of it.
- ``_budget``: connection slots: who holds them, what a run needs.
- ``_namespace``: :class:`WorkerNamespace` and its two kinds, schema and database.
- ``_clone`` and ``_template``: the run's template, built once and copied per worker.
- ``_reset``: the ``delete`` and ``truncate`` resets.
- ``_connections``: the connections the fixtures hand to tests.
- ``_reap``: dropping what dead runs left; ``_cli``: ``worker-utils reap``.

psycopg is imported inside the functions that need it, so ``import
worker_utils`` works without it.
"""

from __future__ import annotations

from worker_utils.postgres._connections import AsyncConnector, SharedConnection
from worker_utils.postgres._dsn import URL_VAR, namespace_dsn
from worker_utils.postgres._errors import NamespaceNotOursError, PostgresError
from worker_utils.postgres._names import (
    DEFAULT_PREFIX,
    get_worker_postgres_schema,
    template_name,
    worker_postgres_name,
)
from worker_utils.postgres._namespace import (
    KINDS,
    RESET_MODES,
    WorkerNamespace,
    create_extensions,
)
from worker_utils.postgres._pooler import check_pooler
from worker_utils.postgres._preflight import APP_CONNECTIONS, preflight
from worker_utils.postgres._reap import ReapResult, reap
from worker_utils.postgres._template import build_template, drop_template
from worker_utils.postgres._urls import DRIVERS, DriverURL, render_url, worker_url

__all__ = [
    "APP_CONNECTIONS",
    "DEFAULT_PREFIX",
    "DRIVERS",
    "KINDS",
    "RESET_MODES",
    "URL_VAR",
    "AsyncConnector",
    "DriverURL",
    "NamespaceNotOursError",
    "PostgresError",
    "ReapResult",
    "SharedConnection",
    "WorkerNamespace",
    "build_template",
    "check_pooler",
    "create_extensions",
    "drop_template",
    "get_worker_postgres_schema",
    "namespace_dsn",
    "preflight",
    "reap",
    "render_url",
    "template_name",
    "worker_postgres_name",
    "worker_url",
]
