"""The check a run makes once, before any test, that its server can serve every worker."""

from __future__ import annotations

import os
import re
import shlex
import socket
import struct

from worker_utils._util import mask_password
from worker_utils.postgres._budget import budget_warning, read_server_use
from worker_utils.postgres._dsn import connect, first_line, psycopg_module
from worker_utils.postgres._errors import PostgresError
from worker_utils.postgres._namespace import kind_of

__all__ = ["APP_CONNECTIONS", "parse_url", "preflight"]

#: The default of ``worker_utils_postgres_app_connections``: the connections one
#: worker's tests hold at once besides worker_utils' own (``worker_postgres``
#: and an application's connection).
APP_CONNECTIONS = 2
#: Seconds a server has to answer the opening message; PostgreSQL answers at once.
PROBE_TIMEOUT = 1.5
# The first message of every libpq connection; a PostgreSQL server answers it
# with one byte (S or N), or an error message (E) if it is very old.
_SSL_REQUEST = struct.pack("!ii", 8, 80877103)
_NO_DATABASE = re.compile(r'database "(?P<name>[^"]+)" does not exist')


def preflight(
    url: str,
    *,
    setting: str,
    kind: str = "schema",
    workers: int = 1,
    app_connections: int = APP_CONNECTIONS,
    application_name: str | None = None,
    slot_wait: float = 0.0,
    extension_schema: str | None = None,
) -> str | None:
    """Check once, before any test, that the server can give every worker its namespace.

    Args:
        workers: The run's workers, each holding one connection of worker_utils'
            and ``app_connections`` of its tests'.
        application_name: Of the connection the check opens.
        slot_wait: Seconds that connection waits for a free slot on a full server.
        extension_schema: In schema mode, the schema kept on every worker's
            search path, which must exist in the server's database.

    Returns:
        A one-line warning when the server has fewer free connection slots than
        the run needs, naming the numbers and the fixes; None when it has enough.

    Raises:
        PostgresError: A bad URL, an unreachable server, something else than
            PostgreSQL at the address, or a missing database or privilege; the
            message names the setting to change.
    """
    psycopg = psycopg_module()
    params = parse_url(url, setting=setting)
    for host, port in _tcp_addresses(params):
        problem = _not_postgres(host, port)
        if problem:
            raise PostgresError(
                f"{setting}: {host}:{port} is not a PostgreSQL server ({problem}); "
                f"point {setting} at PostgreSQL's port, 5432 by default"
            )
    try:
        conn = connect(url, autocommit=True, wait=slot_wait, application_name=application_name)
    except psycopg.OperationalError as exc:
        missing = _NO_DATABASE.search(str(exc))
        if missing:
            name = missing["name"]
            raise PostgresError(
                f'{setting}: database "{name}" does not exist on the server; create it '
                f"({_createdb(params, name)}) or name another database in {setting}"
            ) from None
        raise PostgresError(
            f"{setting}: cannot connect to {mask_password(url)} ({first_line(exc)}); "
            f"start the server or point {setting} at one that accepts connections"
        ) from None
    namespace_kind = kind_of(kind)
    with conn:
        row = conn.execute(
            psycopg.sql.SQL("SELECT current_user, current_database(), {may_create}").format(
                may_create=psycopg.sql.SQL(namespace_kind.may_create_sql)
            )
        ).fetchone()
        assert row is not None
        user, database, may_create = row
        if not may_create:
            raise PostgresError(namespace_kind.cannot_create(setting, user, database))
        if kind == "schema" and extension_schema:
            found = conn.execute(
                "SELECT 1 FROM pg_namespace WHERE nspname = %s", [extension_schema]
            )
            if found.fetchone() is None:
                raise PostgresError(
                    f"worker_utils_postgres_extension_schema: schema {extension_schema!r} does "
                    f'not exist in database "{database}"; create it (CREATE SCHEMA '
                    f"{extension_schema}) or leave the setting at public"
                )
        use = read_server_use(conn, exclude_self=True)
    return budget_warning(use, workers, app_connections)


def parse_url(url: str, *, setting: str) -> dict[str, str]:
    """The connection parameters of ``url``.

    Raises:
        PostgresError: ``url`` is not a PostgreSQL URL or connection string;
            the message names ``setting``.
    """
    psycopg = psycopg_module()
    try:
        params: dict[str, str] = psycopg.conninfo.conninfo_to_dict(url)
        for given in str(params.get("port") or "5432").split(","):
            if not (given.isdigit() and 0 < int(given) < 65536):
                raise psycopg.ProgrammingError(f"port {given!r} is not a number from 1 to 65535")
    except psycopg.ProgrammingError as exc:
        raise PostgresError(
            f"{setting}: {mask_password(url)!r} is not a PostgreSQL URL ({first_line(exc)}); "
            f"use postgresql://USER@HOST:PORT/DBNAME"
        ) from None
    return params


def _tcp_addresses(params: dict[str, str]) -> list[tuple[str, int]]:
    """The hosts and ports libpq will reach over TCP (a Unix socket needs no probe)."""
    hosts = params.get("hostaddr") or params.get("host") or os.environ.get("PGHOST", "")
    ports = params.get("port") or os.environ.get("PGPORT") or "5432"
    host_list, port_list = hosts.split(","), ports.split(",")
    if len(port_list) == 1:  # one port for every host
        port_list *= len(host_list)
    return [
        (host, int(port))
        for host, port in zip(host_list, port_list, strict=False)
        if host and not host.startswith(("/", "@")) and port.isdigit()
    ]


def _not_postgres(host: str, port: int) -> str | None:
    """What the server at ``host:port`` did instead of answering as PostgreSQL, or None.

    None too when nothing listens there: libpq then says so in its own words.
    """
    try:
        sock = socket.create_connection((host, port), timeout=PROBE_TIMEOUT)
    except OSError:
        return None
    with sock:
        try:
            sock.sendall(_SSL_REQUEST)
            answer = sock.recv(64)
        except TimeoutError:
            return (
                f"it accepted a connection but gave no PostgreSQL answer within {PROBE_TIMEOUT} s"
            )
        except OSError:  # reset: it closed the connection with our message unread
            answer = b""
    # PostgreSQL sends exactly one byte and waits; other servers say more.
    if answer in (b"S", b"N") or answer[:1] == b"E":
        return None
    if not answer:
        return "it closed the connection without a PostgreSQL answer"
    text = answer[:24].decode("ascii", "replace")
    return f"it answered {text!r}, which is not PostgreSQL's protocol"


def _createdb(params: dict[str, str], name: str) -> str:
    """The ``createdb`` command for database ``name`` on the URL's server, as its role."""
    words = ["createdb"]
    for flag, key in (("-h", "host"), ("-p", "port"), ("-U", "user")):
        if params.get(key):
            words += [flag, params[key]]
    return shlex.join([*words, name])
