"""Reaching the server: importing psycopg, connection strings, opening connections."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from worker_utils._util import mask_password, wait_until
from worker_utils.postgres._errors import PostgresError

if TYPE_CHECKING:
    import psycopg

__all__ = [
    "URL_VAR",
    "SlotWaits",
    "connect",
    "error_chain",
    "first_line",
    "namespace_dsn",
    "out_of_slots",
    "psycopg_module",
    "server_message",
]

#: The environment variable naming the server to use.
URL_VAR = "WORKER_UTILS_POSTGRES_URL"
#: Seconds libpq may take to connect; a server that answers at all answers sooner.
CONNECT_TIMEOUT = 10
_EXTRA = "pytest-worker-utils[postgres]"
# What the server answers a connection it has no slot for (SQLSTATE 53300, which
# libpq does not pass on for a refused start-up), PostgreSQL 12 to 18, in English.
_NO_SLOT = re.compile(r"too many clients already|remaining connection slots are reserved")
_TOO_MANY_CONNECTIONS = "53300"
# The pause between attempts on a full server doubles up to this, in seconds.
_SLOT_RETRY_MAX = 2.0


class SlotWaits:
    """How long this process's connections waited for a free slot on a full server."""

    seconds = 0.0
    #: Connections that had to wait.
    connections = 0


def psycopg_module() -> Any:
    """Return the psycopg module, or raise an error naming the extra to install."""
    try:
        import psycopg
    except ImportError:
        raise PostgresError(
            f"worker_postgres: psycopg is not installed; pip install '{_EXTRA}'"
        ) from None
    return psycopg


def namespace_dsn(
    url: str,
    *,
    dbname: str | None = None,
    search_path: Sequence[str] = (),
    application_name: str | None = None,
    lock_timeout: str | None = None,
) -> str:
    """Return a libpq connection string for ``url`` that lands in a given database and schema.

    The search path (and a ``lock_timeout`` other than ``"0"``) travels as
    ``options=-csearch_path=...``, so every client that opens its own
    connection with this string (an ORM, a pool, a subprocess) is isolated
    too; options already in ``url`` are kept.
    """
    conninfo = psycopg_module().conninfo
    params: dict[str, Any] = {}
    if dbname is not None:
        params["dbname"] = dbname
    if application_name is not None:
        params["application_name"] = application_name
    options = [str(conninfo.conninfo_to_dict(url).get("options") or "")]
    # Names are validated identifiers: no spaces, commas or quotes to escape.
    if search_path:
        options.append(f"-csearch_path={','.join(search_path)}")
    if lock_timeout and lock_timeout not in ("0", "0s", "0ms"):
        options.append(f"-clock_timeout={lock_timeout}")
    if len(options) > 1:
        params["options"] = " ".join(option for option in options if option)
    return str(conninfo.make_conninfo(url, **params))


def connect(
    url: str,
    *,
    wait: float = 0.0,
    application_name: str | None = None,
    connection_class: type[psycopg.Connection[Any]] | None = None,
    **kwargs: Any,
) -> psycopg.Connection[Any]:
    """Open a psycopg connection; ``kwargs`` go to ``Connection.connect``.

    A server with no free connection slot is asked again, with pauses that
    double up to 2 s, for up to ``wait`` seconds.

    Raises:
        PostgresError: The server had no free slot for ``wait`` seconds.
    """
    module = psycopg_module()
    cls = connection_class or module.Connection
    if application_name is not None:
        kwargs["application_name"] = application_name
    refused: list[BaseException] = []

    def attempt() -> psycopg.Connection[Any] | None:
        try:
            conn: psycopg.Connection[Any] = cls.connect(
                url, connect_timeout=CONNECT_TIMEOUT, **kwargs
            )
        except module.OperationalError as exc:
            if out_of_slots(exc) is None:
                raise
            refused[:] = [exc]
            return None
        return conn

    start = time.monotonic()
    conn = wait_until(attempt, timeout=wait, interval=0.05, max_interval=_SLOT_RETRY_MAX)
    if refused:
        SlotWaits.seconds += time.monotonic() - start
        SlotWaits.connections += 1
    if conn is None:
        waited = f" for {wait:g} s" if wait else ""
        raise PostgresError(
            f"worker_postgres: {_server_name(url)} had no free connection slot{waited} "
            f"({server_message(refused[0])}); run fewer workers (-n) or concurrent runs, "
            f"raise max_connections, or wait longer with worker_utils_postgres_slot_wait"
        )
    return conn


def _server_name(url: str) -> str:
    """``the server at host:port`` of ``url``, for messages (its URL, masked, if unclear)."""
    try:
        params = psycopg_module().conninfo.conninfo_to_dict(url)
    except psycopg_module().ProgrammingError:
        return mask_password(url)
    host = params.get("host") or params.get("hostaddr") or "localhost"
    return f"the server at {host}:{params.get('port') or 5432}"


def error_chain(error: BaseException | None) -> Iterator[BaseException]:
    """``error`` and the errors behind it: SQLAlchemy's ``orig``, ``__cause__``, ``__context__``."""
    seen = 0
    while error is not None and seen < 10:
        yield error
        error = getattr(error, "orig", None) or error.__cause__ or error.__context__
        seen += 1


def out_of_slots(error: BaseException | None) -> BaseException | None:
    """The error in ``error``'s chain that says the server had no connection slot left, if any.

    Only a driver's error counts (one with a ``sqlstate`` or ``pgcode``, as
    psycopg's, psycopg2's and asyncpg's have), found by SQLSTATE 53300 where the
    driver gives one (asyncpg), else by the server's words.
    """
    for each in error_chain(error):
        if not (hasattr(each, "sqlstate") or hasattr(each, "pgcode")):
            continue  # a wrapper (SQLAlchemy's, Django's), or a message that quotes one
        code = getattr(each, "sqlstate", None) or getattr(each, "pgcode", None)
        if code == _TOO_MANY_CONNECTIONS or _NO_SLOT.search(str(each)):
            return each
    return None


def server_message(error: BaseException) -> str:
    """The server's words in a refused connection's error, without libpq's preamble."""
    text = str(error).strip()
    _, fatal, rest = text.rpartition("FATAL:")
    text = (rest if fatal else text).strip()
    return text.splitlines()[0] if text else type(error).__name__


def first_line(exc: BaseException) -> str:
    """The first line of an error's message (libpq adds hints and context below it)."""
    text = str(exc).strip()
    return text.splitlines()[0].strip() if text else type(exc).__name__
