"""Reaching the server: importing psycopg, connection strings, opening connections."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from worker_utils.postgres._errors import PostgresError

if TYPE_CHECKING:
    import psycopg

__all__ = ["URL_VAR", "connect", "first_line", "namespace_dsn", "psycopg_module"]

#: The environment variable naming the server to use.
URL_VAR = "WORKER_UTILS_POSTGRES_URL"
#: Seconds libpq may take to connect; a server that answers at all answers sooner.
CONNECT_TIMEOUT = 10
_EXTRA = "pytest-worker-utils[postgres]"


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


def connect(url: str, **kwargs: Any) -> psycopg.Connection[Any]:
    """Open a psycopg connection; ``kwargs`` go to ``Connection.connect``."""
    conn: psycopg.Connection[Any] = psycopg_module().Connection.connect(
        url, connect_timeout=CONNECT_TIMEOUT, **kwargs
    )
    return conn


def first_line(exc: BaseException) -> str:
    """The first line of an error's message (libpq adds hints and context below it)."""
    text = str(exc).strip()
    return text.splitlines()[0].strip() if text else type(exc).__name__
