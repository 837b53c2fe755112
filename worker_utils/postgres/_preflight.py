"""The check a run makes once, before any test, that its server can serve every worker."""

from __future__ import annotations

from worker_utils._util import mask_password
from worker_utils.postgres._dsn import connect, first_line, psycopg_module
from worker_utils.postgres._errors import PostgresError
from worker_utils.postgres._namespace import kind_of

__all__ = ["CONNECTIONS_PER_WORKER", "preflight"]

#: Connections one worker may open: its keeper, its test connection, and the
#: application's own (a pool or two).
CONNECTIONS_PER_WORKER = 4


def preflight(url: str, *, setting: str, kind: str = "schema", workers: int = 1) -> None:
    """Check once, before any test, that the server can give every worker its namespace.

    Raises:
        PostgresError: A bad URL, an unreachable server, a missing privilege or
            too few free connections; the message names the setting to change.
    """
    psycopg = psycopg_module()
    try:
        params = psycopg.conninfo.conninfo_to_dict(url)
        for given in str(params.get("port") or "5432").split(","):
            if not (given.isdigit() and 0 < int(given) < 65536):
                raise psycopg.ProgrammingError(f"port {given!r} is not a number from 1 to 65535")
    except psycopg.ProgrammingError as exc:
        raise PostgresError(
            f"{setting}: {mask_password(url)!r} is not a PostgreSQL URL ({first_line(exc)}); "
            f"use postgresql://USER@HOST:PORT/DBNAME"
        ) from None
    try:
        conn = connect(url, autocommit=True)
    except psycopg.OperationalError as exc:
        raise PostgresError(
            f"{setting}: cannot connect to {mask_password(url)} ({first_line(exc)}); "
            f"start the server or point {setting} at one that accepts connections"
        ) from None
    namespace_kind = kind_of(kind)
    with conn:
        row = conn.execute(
            psycopg.sql.SQL(
                """
                SELECT current_user, current_database(), {may_create},
                       current_setting('max_connections')::int
                         - current_setting('superuser_reserved_connections')::int,
                       (SELECT count(*) FROM pg_stat_activity
                        WHERE backend_type = 'client backend')
                """
            ).format(may_create=psycopg.sql.SQL(namespace_kind.may_create_sql))
        ).fetchone()
    assert row is not None
    user, database, may_create, allowed, used = row
    if not may_create:
        raise PostgresError(namespace_kind.cannot_create(setting, user, database))
    needed = workers * CONNECTIONS_PER_WORKER
    if allowed - used < needed:
        raise PostgresError(
            f"{setting}: the server accepts {allowed - used} more connections "
            f"(max_connections minus reserved: {allowed}, in use: {used}) and {workers} "
            f"worker(s) need about {needed}; raise max_connections in postgresql.conf "
            f"or run fewer workers (-n)"
        )
