"""Options, settings and run hooks of the PostgreSQL package; its fixtures are in ``fixtures``.

Logic lives in :mod:`worker_utils.postgres` and :mod:`worker_utils.servers.postgres`;
psycopg is imported only when a PostgreSQL fixture is used.
"""

from __future__ import annotations

import contextlib
import os
from typing import NoReturn

import pytest

from worker_utils import postgres
from worker_utils._plugin import find_setting, usage_error

pytest_plugins = ["worker_utils.postgres.fixtures"]

_PG_MARKER = "worker_postgres"
_PG_RESET_CHOICES = ("auto", *postgres.RESET_MODES)


class _PostgresSettings:
    """The run's PostgreSQL settings, read once in every process."""

    def __init__(self, config: pytest.Config) -> None:
        __tracebackhide__ = True
        self.url_setting, url = find_setting(config, "postgres_url", postgres.URL_VAR)
        self.url: str | None = url or None
        self.prefix: str = config.getini("worker_utils_postgres_prefix")
        self.mode: str = config.getini("worker_utils_postgres_mode")
        self.reset: str = config.getini("worker_utils_postgres_reset")
        self.extensions: list[str] = config.getini("worker_utils_postgres_extensions")
        self.extension_schema: str = config.getini("worker_utils_postgres_extension_schema")
        try:
            postgres.worker_postgres_name("0" * 10, "gw0", self.prefix)
        except ValueError as exc:
            usage_error(exc)
        for setting, value, choices in (
            ("worker_utils_postgres_mode", self.mode, postgres.KINDS),
            ("worker_utils_postgres_reset", self.reset, _PG_RESET_CHOICES),
        ):
            if value not in choices:
                raise pytest.UsageError(
                    f"{setting}: found {value!r}; use one of {', '.join(choices)}"
                )
        self.failure: str | None = None  # the first setup error, repeated without traceback


_pg_key = pytest.StashKey[_PostgresSettings]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("worker_utils")
    group.addoption(
        "--worker-utils-postgres-url",
        dest="worker_utils_postgres_url",
        default=None,
        metavar="URL",
        help="PostgreSQL server for worker_postgres fixtures (default: "
        f"${postgres.URL_VAR}, then an embedded server started once per run)",
    )
    parser.addini(
        "worker_utils_postgres_url",
        "PostgreSQL server for worker_postgres fixtures, such as postgresql://user@host/db",
        default="",
    )
    parser.addini(
        "worker_utils_postgres_prefix",
        "Prefix of per-worker schema and database names",
        default=postgres.DEFAULT_PREFIX,
    )
    parser.addini(
        "worker_utils_postgres_mode",
        "What each worker gets: schema (the default) or database",
        default="schema",
    )
    parser.addini(
        "worker_utils_postgres_reset",
        "How tests are undone: auto (the default: transaction with worker_postgres "
        "alone, delete with worker_postgres_dsn), transaction, delete, truncate or none",
        default="auto",
    )
    parser.addini(
        "worker_utils_postgres_extensions",
        "Extensions created once per run in worker_utils_postgres_extension_schema",
        type="args",
        default=[],
    )
    parser.addini(
        "worker_utils_postgres_extension_schema",
        "Schema kept on every worker's search path after its own, for extension types",
        default="public",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{_PG_MARKER}(reset): how worker_postgres fixtures undo this test's changes: "
        "transaction, delete, truncate or none",
    )
    settings = _PostgresSettings(config)
    config.stash[_pg_key] = settings
    if getattr(config, "workerinput", None) is None and settings.url:
        config.pluginmanager.register(_PostgresRunHooks(settings), "worker_utils.postgres")


def _worker_count(config: pytest.Config) -> int:
    if config.pluginmanager.hasplugin("xdist") and getattr(config.option, "dist", "no") != "no":
        value = getattr(config.option, "numprocesses", None)
        if isinstance(value, int) and value > 0:
            return value
        if value in ("auto", "logical"):
            return os.cpu_count() or 1
    return 1


class _PostgresRunHooks:
    """In the process that owns the run, with a configured server: check it, clean it."""

    def __init__(self, settings: _PostgresSettings) -> None:
        self.settings = settings

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        # Once, before any test: a bad server is one clear message, not one error per test.
        __tracebackhide__ = True
        url, setting = self.settings.url, self.settings.url_setting
        assert url is not None
        try:
            postgres.preflight(
                url, setting=setting, kind=self.settings.mode, workers=_worker_count(session.config)
            )
            postgres.reap(url)  # what crashed runs left behind
        except postgres.PostgresError as exc:
            error = str(exc)
        else:
            return
        raise pytest.UsageError(error)

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        # Namespaces of this run's workers that crashed (kill -9) are dead now.
        if self.settings.url:
            with contextlib.suppress(Exception):
                postgres.reap(self.settings.url)


def _pg_fail(settings: _PostgresSettings, error: str) -> NoReturn:
    __tracebackhide__ = True
    settings.failure = settings.failure or error
    pytest.fail(settings.failure, pytrace=False)


def _pg_settings(request: pytest.FixtureRequest) -> _PostgresSettings:
    __tracebackhide__ = True
    settings = request.config.stash[_pg_key]
    if settings.failure is not None:
        pytest.fail(settings.failure, pytrace=False)
    return settings
