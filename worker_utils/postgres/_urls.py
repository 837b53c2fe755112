"""A worker's own URL: the server's URL turned into one that lands in the worker's namespace.

Pure string work on ``postgresql://`` URLs (psycopg is imported only to read a
``key=value`` connection string), so that code running before any fixture, or
without psycopg, can compute the URL a worker's tests will use.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from typing import NamedTuple

__all__ = ["DRIVERS", "DriverURL", "render_url", "worker_url"]

_KINDS = ("schema", "database")
_SCHEMES = ("postgresql", "postgres")
#: The values of ``render_url(driver=...)``.
DRIVERS = ("libpq", "psycopg", "psycopg2", "sqlalchemy", "asyncpg", "sqlalchemy+asyncpg")


def worker_url(
    server_url: str,
    namespace: str,
    kind: str,
    *,
    application_name: str | None = None,
    extension_schema: str = "public",
    lock_timeout: str | None = None,
) -> str:
    """Return the ``postgresql://`` URL whose connections land in a worker's namespace.

    In schema mode it names the server's database with
    ``options=-csearch_path=<namespace>,<extension_schema>``; in database mode
    it names the database ``namespace``. ``application_name`` and a
    ``lock_timeout`` (``"5s"``; ``"0"`` or None leaves the server's) travel in
    the query too, percent-encoded: psycopg, psycopg2, libpq and SQLAlchemy
    (``postgresql://`` or ``postgresql+psycopg://``) take the URL as it is.
    Options, SSL and other parameters of ``server_url`` are kept.

    Args:
        server_url: The server, as a URL or a libpq ``key=value`` string.
        namespace: The worker's schema or database name (a lower-case identifier).
        kind: ``"schema"`` or ``"database"``.

    Raises:
        ValueError: An unknown ``kind``.
    """
    if kind not in _KINDS:
        raise ValueError(
            f"worker_utils_postgres_mode: found {kind!r}; use one of {', '.join(_KINDS)}"
        )
    _, netloc, path, query = _split(server_url)
    options = [query.pop("options", "")]
    if kind == "database":
        path = "/" + urllib.parse.quote(namespace, safe="")
        query.pop("dbname", None)
    else:
        schemas = [namespace] + (
            [extension_schema] if extension_schema not in ("", namespace) else []
        )
        options.append("-csearch_path=" + ",".join(schemas))
    if lock_timeout and lock_timeout.strip() not in ("0", "0s", "0ms"):
        options.append(f"-clock_timeout={lock_timeout.strip()}")
    if application_name is not None:
        query["application_name"] = application_name
    joined = " ".join(option for option in options if option)
    if joined:
        query["options"] = joined
    # postgres:// (which libpq also takes) is not a scheme SQLAlchemy knows.
    return _join("postgresql", netloc, path, query)


class DriverURL(NamedTuple):
    """A worker's URL as one driver takes it, and the settings it takes apart from the URL."""

    url: str
    #: For asyncpg's ``connect(..., server_settings=...)`` (or SQLAlchemy's
    #: ``connect_args={"server_settings": ...}``); empty for the libpq drivers.
    server_settings: dict[str, str]


def render_url(url: str, driver: str = "libpq") -> DriverURL:
    """Return a worker's URL (``worker_postgres_url``) in the form ``driver`` takes.

    ``libpq``, ``psycopg`` and ``psycopg2`` take it as it is; ``sqlalchemy``
    gets the ``postgresql+psycopg://`` scheme. ``asyncpg`` (and
    ``sqlalchemy+asyncpg``) read no ``options``: the search path, lock timeout
    and application name come back as ``server_settings`` instead::

        target = render_url(worker_postgres_url, driver="asyncpg")
        conn = await asyncpg.connect(target.url, server_settings=target.server_settings)

    Raises:
        ValueError: An unknown driver.
    """
    if driver not in DRIVERS:
        raise ValueError(f"render_url: driver {driver!r}; use one of {', '.join(DRIVERS)}")
    scheme, netloc, path, query = _split(url)
    if driver in ("libpq", "psycopg", "psycopg2"):
        return DriverURL(_join("postgresql", netloc, path, query), {})
    if driver == "sqlalchemy":
        return DriverURL(_join("postgresql+psycopg", netloc, path, query), {})
    settings: dict[str, str] = {}
    for option in query.pop("options", "").split():
        name, _, value = option.removeprefix("-c").partition("=")
        if option.startswith("-c") and value:
            settings[name] = value
    if "application_name" in query:
        settings["application_name"] = query.pop("application_name")
    scheme = "postgresql+asyncpg" if driver == "sqlalchemy+asyncpg" else "postgresql"
    return DriverURL(_join(scheme, netloc, path, query), settings)


def _split(url: str) -> tuple[str, str, str, dict[str, str]]:
    """Scheme, netloc, path and query parameters of a URL or a ``key=value`` string."""
    scheme, sep, _ = url.partition("://")
    if not sep:
        return _from_conninfo(url)
    if scheme.partition("+")[0] not in _SCHEMES:
        raise ValueError(f"{url!r} is not a PostgreSQL URL; use postgresql://USER@HOST:PORT/DBNAME")
    parts = urllib.parse.urlsplit(url)
    # libpq reads '+' as itself, not a space: parse_qsl would turn it into one.
    query = dict(urllib.parse.parse_qsl(parts.query.replace("+", "%2B"), keep_blank_values=True))
    return scheme, parts.netloc, parts.path, query


def _from_conninfo(conninfo: str) -> tuple[str, str, str, dict[str, str]]:
    from worker_utils.postgres._dsn import psycopg_module

    params: Mapping[str, str] = psycopg_module().conninfo.conninfo_to_dict(conninfo)
    query = {key: str(value) for key, value in params.items()}
    path = "/" + urllib.parse.quote(query.pop("dbname", ""), safe="")
    netloc = ""
    host = query.get("host", "")
    if host and "," not in host and not host.startswith("/"):  # else it stays in the query
        netloc = ("[" + query.pop("host") + "]") if ":" in host else query.pop("host")
        if query.get("port", "").isdigit():
            netloc += ":" + query.pop("port")
        if "user" in query:
            user = urllib.parse.quote(query.pop("user"), safe="")
            if "password" in query:
                user += ":" + urllib.parse.quote(query.pop("password"), safe="")
            netloc = user + "@" + netloc
    return "postgresql", netloc, path, query


def _join(scheme: str, netloc: str, path: str, query: Mapping[str, str]) -> str:
    encoded = urllib.parse.urlencode(query, quote_via=urllib.parse.quote, safe="")
    # Not urlunsplit: it drops the '//' of an empty host (a Unix socket in the query).
    return f"{scheme}://{netloc}{path}" + (f"?{encoded}" if encoded else "")
