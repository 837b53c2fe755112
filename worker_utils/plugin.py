"""The pytest plugin: options, fixtures and hooks over the worker_utils modules.

Registered through the ``pytest11`` entry point. It holds no logic of its own
beyond wiring: the run's lifecycle (id, directory, liveness lock, teardowns) is
started here in the process that owns the run and shared with xdist workers
through ``workerinput``.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import pytest

from worker_utils import _worker, coordination, paths, ports, postgres
from worker_utils._report import WorkerReport

T = TypeVar("T")

_RUN_DIR_INPUT = "worker_utils_run_dir"
_REPORT_OUTPUT = "worker_utils_report"
_PORT_RANGE_VAR = "WORKER_UTILS_PORT_RANGE"


class _Run:
    """What this process knows about the run it belongs to."""

    def __init__(self, uid: str, directory: Path, lock: coordination.RunLock | None) -> None:
        self.uid = uid
        self.directory = directory
        self.lock = lock  # held only by the process that owns the run
        self.saved_env: dict[str, str | None] = {}
        self.report = WorkerReport(_worker.get_worker_id())
        self.worker_reports: dict[str, dict[str, Any]] = {}
        self.port_range: range | None = None


_run_key = pytest.StashKey[_Run]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("worker_utils", "worker_utils: per-worker resources")
    group.addoption(
        "--worker-utils-port-range",
        dest="worker_utils_port_range",
        default=None,
        metavar="LOW-HIGH",
        help="Lease worker_port ports only from this range (default: portpicker's choice)",
    )
    parser.addini(
        "worker_utils_port_range",
        "Lease worker_port ports only from this range, such as 20000-20999",
        default="",
    )
    _add_redis_options(parser)
    _add_guard_options(parser)
    _add_postgres_options(parser)


def _set_env(run: _Run, name: str, value: str | None) -> None:
    run.saved_env.setdefault(name, os.environ.get(name))
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


def _setting(config: pytest.Config, name: str, env: str | None = None) -> tuple[str, str]:
    """Return where setting ``name`` was given and its value; ``("", "")`` if nowhere.

    The command line (``--worker-utils-<name>``) wins over the environment
    variable ``env``, which wins over the ini option ``worker_utils_<name>``.
    Empty values count as not given. The place is returned so that error
    messages name the setting the user has to change.
    """
    dest = f"worker_utils_{name}"
    sources = [(f"--{dest.replace('_', '-')}", config.getoption(dest, None))]
    if env is not None:
        sources.append((env, os.environ.get(env)))
    sources.append((dest, config.getini(dest)))
    for where, value in sources:
        if value:
            return where, str(value)
    return "", ""


def _check_contract() -> None:
    __tracebackhide__ = True
    try:
        _worker.get_worker_id()
        _worker.get_worker_count()
        _worker.get_testrun_uid()
    except _worker.WorkerContractError as exc:
        raise pytest.UsageError(str(exc)) from None


def _port_range(config: pytest.Config) -> range | None:
    __tracebackhide__ = True
    setting, text = _setting(config, "port_range", _PORT_RANGE_VAR)
    if not text:
        return None
    try:
        return ports.parse_port_range(text, setting=setting)
    except ValueError as exc:
        raise pytest.UsageError(str(exc)) from None


def _start_run(config: pytest.Config, given_uid: str | None) -> _Run:
    """Start the run in the process that owns it: id, directory, liveness lock, environment."""
    __tracebackhide__ = True
    uid = given_uid or uuid.uuid4().hex
    try:
        _worker.get_testrun_uid({_worker.RUN_VAR: uid})
    except _worker.WorkerContractError as exc:
        raise pytest.UsageError(f"--testrunuid: {exc}") from None
    coordination.reap_dead_runs()
    lock = coordination.RunLock(uid)
    run = _Run(uid, lock.acquire(), lock)
    # Variables inherited from an outer pytest (this run started inside a
    # worker of another) would make the helpers report that outer worker.
    for name in (_worker.WORKER_VAR, _worker.COUNT_VAR, _worker.XDIST_RUN_VAR):
        _set_env(run, name, None)
    _set_env(run, _worker.RUN_VAR, uid)
    _set_env(run, coordination.RUN_DIR_VAR, str(run.directory))
    return run


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config) -> None:
    # pytest imports the first conftest.py files before pytest_configure: start
    # the run now, so that helpers called at their import time see this run.
    if _worker.WORKER_VAR in os.environ:
        return  # an xdist worker, which learns its run from workerinput
    given = getattr(early_config.known_args_namespace, "testrunuid", None)
    early_config.stash[_run_key] = _start_run(early_config, given)


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    _check_contract()
    workerinput: dict[str, Any] | None = getattr(config, "workerinput", None)
    run = config.stash.get(_run_key, None)
    if workerinput is not None:
        uid = workerinput["testrunuid"]
        run = _Run(uid, Path(workerinput[_RUN_DIR_INPUT]), lock=None)
        _set_env(run, _worker.RUN_VAR, uid)
        _set_env(run, coordination.RUN_DIR_VAR, str(run.directory))
    elif run is None:
        run = _start_run(config, getattr(config.option, "testrunuid", None))
    if workerinput is None and config.pluginmanager.hasplugin("xdist"):
        config.option.testrunuid = run.uid  # xdist hands this id to the workers
    run.report = WorkerReport(_worker.get_worker_id())
    run.port_range = _port_range(config)
    config.stash[_run_key] = run
    _configure_redis(config)
    _configure_guard(config)
    _configure_postgres(config)
    if config.pluginmanager.hasplugin("xdist"):
        config.pluginmanager.register(_XdistHooks(run), "worker_utils.xdist")


def pytest_unconfigure(config: pytest.Config) -> None:
    run = config.stash.get(_run_key, None)
    if run is None:
        return
    if run.lock is not None:
        for failure in coordination.run_teardowns(run.directory):
            sys.stderr.write(f"worker_utils: {failure}\n")
        run.lock.release()
    for name, value in run.saved_env.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    del config.stash[_run_key]


class _XdistHooks:
    """Hooks that exist only when pytest-xdist is installed and active."""

    def __init__(self, run: _Run) -> None:
        self.run = run

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        node.workerinput[_RUN_DIR_INPUT] = str(self.run.directory)

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: object) -> None:
        output = getattr(node, "workeroutput", None) or {}
        report = output.get(_REPORT_OUTPUT)
        if report is not None:
            self.run.worker_reports[report["worker"]] = report


def pytest_sessionfinish(session: pytest.Session) -> None:
    run = session.config.stash.get(_run_key, None)
    workeroutput = getattr(session.config, "workeroutput", None)
    if run is not None and workeroutput is not None:
        workeroutput[_REPORT_OUTPUT] = run.report.as_dict()


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    run = config.stash.get(_run_key, None)
    if run is None:
        return
    reports = run.worker_reports or {run.report.worker: run.report.as_dict()}
    for line in WorkerReport.summary_lines(reports, verbose=config.get_verbosity() > 0):
        terminalreporter.write_line(line)


def _run(request: pytest.FixtureRequest) -> _Run:
    return request.config.stash[_run_key]


@pytest.fixture(scope="session")
def worker_tmp_path(request: pytest.FixtureRequest) -> Path:
    """A directory private to this worker in this run, removed when the run ends.

    A worker that replaces a crashed one gets a new directory.
    """
    path = paths.worker_tmp_path()
    _run(request).report.note("tmp", str(path))
    return path


@pytest.fixture(scope="session")
def run_tmp_path() -> Path:
    """A directory shared by every worker of this run, and only this run.

    Removed when the run ends; two concurrent runs never share it.
    """
    return paths.run_tmp_path()


class SocketPathFactory:
    """Hands out Unix socket paths that fit ``bind(AF_UNIX)``, however deep the temp dir."""

    def __init__(self, preferred: Path) -> None:
        self._preferred = preferred
        self._short: Path | None = None
        self._given: set[str] = set()
        self._paths: list[Path] = []

    def __call__(self, name: str = "socket") -> Path:
        """Return a new socket path ending in ``name`` (made unique if asked twice)."""
        unique, n = name, 1
        while unique in self._given:
            n += 1
            unique = f"{name}{n}"
        self._given.add(unique)
        directory = paths.short_socket_dir(self._preferred, len(os.fsencode(unique)))
        if directory is None:
            if self._short is None:
                self._short = paths.make_short_dir()
            directory = self._short
        self._paths.append(directory / unique)
        return directory / unique

    def cleanup(self) -> None:
        """Remove the sockets at the paths handed out, and the short directory if one was made.

        The next test of the worker may then bind the same names again.
        """
        for path in self._paths:
            path.unlink(missing_ok=True)
        if self._short is not None:
            shutil.rmtree(self._short, ignore_errors=True)


@pytest.fixture
def worker_socket_path(worker_tmp_path: Path) -> Iterator[SocketPathFactory]:
    """A factory of Unix socket paths short enough for ``AF_UNIX`` (107 bytes on Linux).

    ``worker_socket_path("db.sock")`` returns a path in this worker's directory
    when it fits, else in a short private directory under ``/tmp``. Whatever is
    left at the paths is removed after the test, so every test may use the same
    names.
    """
    factory = SocketPathFactory(worker_tmp_path)
    yield factory
    factory.cleanup()


class PortFactory:
    """Leases free TCP ports; each stays reserved until the factory is closed."""

    def __init__(self, run: _Run) -> None:
        self._run = run
        self.leases: list[ports.PortLease] = []

    def __call__(self) -> int:
        """Return a free TCP port no other worker or concurrent run holds."""
        __tracebackhide__ = True
        try:
            lease = ports.lease_port(port_range=self._run.port_range)
        except ports.PortsExhaustedError as exc:
            error = str(exc)
        else:
            self.leases.append(lease)
            self._run.report.note("ports", lease.port)
            return lease.port
        pytest.fail(error, pytrace=False)

    def close(self) -> None:
        """Release every port this factory leased."""
        for lease in self.leases:
            lease.release()
        self.leases.clear()


@pytest.fixture(scope="session")
def worker_port_factory(request: pytest.FixtureRequest) -> Iterator[PortFactory]:
    """Session-scoped ``worker_port``: ports stay leased until the worker's session ends.

    Use it from session fixtures that start servers.
    """
    factory = PortFactory(_run(request))
    yield factory
    factory.close()


@pytest.fixture
def worker_port(request: pytest.FixtureRequest) -> Iterator[PortFactory]:
    """A factory of free TCP ports: ``worker_port()`` returns a new port each call.

    No other worker, and no concurrent pytest run on this host, receives a port
    while this test holds it; the ports are released when the test ends, or
    by the kernel if the worker dies.
    """
    factory = PortFactory(_run(request))
    yield factory
    factory.close()


class RunOnce:
    """Callable behind the ``run_once`` fixture."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory

    def __call__(
        self,
        key: str,
        compute: Callable[[], T],
        *,
        teardown: Callable[[Any], object] | None = None,
        timeout: float = 600.0,
    ) -> T:
        """Compute ``compute()`` once per run and share it; see :func:`worker_utils.run_once`."""
        __tracebackhide__ = True
        try:
            return coordination.run_once(
                key, compute, teardown=teardown, run_dir=self._directory, timeout=timeout
            )
        except coordination.RunOnceError as exc:
            error = str(exc)
        pytest.fail(error, pytrace=False)


@pytest.fixture(scope="session")
def run_once(request: pytest.FixtureRequest) -> RunOnce:
    """Run expensive setup once per run and share its JSON-serialisable result.

    ``run_once("schema", build, teardown=drop)``: the first worker to arrive
    calls ``build()`` under a file lock; every other worker of the run gets the
    stored value. ``drop(value)`` runs once, after the last worker ends. Works the
    same with ``-n 0``, ``-n 2`` and ``-p no:xdist``.
    """
    return RunOnce(_run(request).directory)


# --- Redis ---

_REDIS_URL_VAR = "WORKER_UTILS_REDIS_URL"
_REDIS_MODE_VAR = "WORKER_UTILS_REDIS_MODE"
_REDIS_WAIT_VAR = "WORKER_UTILS_REDIS_WAIT"


def _add_redis_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("worker_utils")
    group.addoption(
        "--worker-utils-redis-url",
        dest="worker_utils_redis_url",
        default=None,
        metavar="URL",
        help="Redis server to lease worker databases on (default: start a redis-server per run)",
    )
    group.addoption(
        "--worker-utils-redis-mode",
        dest="worker_utils_redis_mode",
        default=None,
        choices=("auto", "index", "prefix"),
        help="How workers share Redis: auto (a database, else a key prefix), index, prefix",
    )
    parser.addini(
        "worker_utils_redis_url",
        "Redis server to lease worker databases on, such as redis://localhost:6379/0",
        default="",
    )
    parser.addini(
        "worker_utils_redis_mode",
        "How workers share Redis: auto, index (fail when no database is free) or prefix",
        default="",
    )
    parser.addini(
        "worker_utils_redis_wait",
        "Seconds a worker waits for a free Redis database before prefix mode (default 60)",
        default="",
    )


class _RedisSettings:
    """The Redis settings of this run, checked when pytest starts."""

    def __init__(self, config: pytest.Config) -> None:
        __tracebackhide__ = True
        from worker_utils import redis as wu_redis

        self.url: wu_redis.RedisUrl | None = None
        self.setting = "the embedded redis-server"
        self.embedded_url: str | None = None
        setting, text = _setting(config, "redis_url", _REDIS_URL_VAR)
        if text:
            try:
                self.url = wu_redis.parse_redis_url(text, setting=setting)
            except wu_redis.RedisUrlError as exc:
                raise pytest.UsageError(str(exc)) from None
            self.setting = setting
        self.mode: wu_redis.Mode = "auto"
        setting, text = _setting(config, "redis_mode", _REDIS_MODE_VAR)
        if text:
            if text not in wu_redis.MODES:
                raise pytest.UsageError(
                    f"{setting}: found {text!r}; expected auto, index or prefix"
                )
            self.mode = text
        self.wait = 60.0
        setting, text = _setting(config, "redis_wait", _REDIS_WAIT_VAR)
        if text:
            try:
                self.wait = float(text)
                if not 0 <= self.wait < float("inf"):
                    raise ValueError
            except ValueError:
                raise pytest.UsageError(
                    f"{setting}: found {text!r}; expected a number of seconds, such as 60"
                ) from None


_redis_key = pytest.StashKey[_RedisSettings]()


def _configure_redis(config: pytest.Config) -> None:
    config.stash[_redis_key] = _RedisSettings(config)


def _redis_notice(config: pytest.Config) -> Callable[[str], None]:
    def notice(message: str) -> None:
        # Shown while the worker waits, not after: past pytest's capture, to
        # stderr, which an xdist worker shares with the controller's terminal.
        capture = config.pluginmanager.getplugin("capturemanager")
        with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
            sys.stderr.write(message + "\n")
            sys.stderr.flush()

    return notice


@pytest.fixture(scope="session")
def worker_redis_server_url(request: pytest.FixtureRequest) -> str:
    """The Redis server the workers lease databases on: the fixture you want to override.

    The configured URL (``--worker-utils-redis-url``, ``WORKER_UTILS_REDIS_URL``,
    ini ``worker_utils_redis_url``), else a ``redis-server`` started once per run
    and stopped when the run ends. Its database (0 by default) holds the leases
    and is never leased.
    """
    __tracebackhide__ = True
    settings = request.config.stash[_redis_key]
    if settings.url is not None:
        return settings.url.url
    from worker_utils.servers import _process
    from worker_utils.servers import redis as redis_server

    try:
        settings.embedded_url = redis_server.shared_url(_run(request).directory)
        return settings.embedded_url
    except (_process.ServerStartError, coordination.RunOnceError) as exc:
        error = str(exc)
    pytest.fail(error, pytrace=False)


@pytest.fixture(scope="session")
def worker_redis_lease(
    request: pytest.FixtureRequest, worker_redis_server_url: str
) -> Iterator[Any]:
    """This worker's Redis lease: a database index (or a key prefix) for the whole session.

    A :class:`worker_utils.redis.RedisLease`; use its ``url`` in session fixtures
    that configure an application. Released, and its data removed, at session
    end. A setup error is reported once per worker as a one-line failure of
    every test that needs Redis, without a traceback.
    """
    __tracebackhide__ = True
    from worker_utils import redis as wu_redis

    settings = request.config.stash[_redis_key]
    url, setting = settings.url, settings.setting
    error: str | None
    try:
        if url is None or url.url != worker_redis_server_url:
            if worker_redis_server_url != settings.embedded_url:
                setting = "the worker_redis_server_url fixture"  # overridden by the project
            url = wu_redis.parse_redis_url(worker_redis_server_url, setting=setting)
        lease = wu_redis.lease_redis(
            url,
            setting=setting,
            mode=settings.mode,
            wait=settings.wait,
            notify=_redis_notice(request.config),
        )
    except (wu_redis.RedisSetupError, wu_redis.RedisUrlError) as exc:
        error = str(exc)  # failed outside the except block: no chained traceback
    else:
        error = None
    if error is not None:
        pytest.fail(error, pytrace=False)
    if lease.mode == "index":
        # If this worker dies, the controller empties and frees its database at run end.
        coordination.run_once(
            f"worker-utils-redis-lease-{_worker.get_worker_id()}",
            lease.abandon_record,
            teardown=wu_redis.release_abandoned,
            run_dir=_run(request).directory,
        )
    _run(request).report.note("redis", lease.describe())
    yield lease
    lease.release()


@pytest.fixture
def _worker_redis_clean(worker_redis_lease: Any) -> Iterator[Any]:
    __tracebackhide__ = True
    if worker_redis_lease.lost:
        pytest.fail(
            f"worker_redis: the lease on {worker_redis_lease.describe()} expired while this "
            f"worker stalled; another worker may hold it now",
            pytrace=False,
        )
    yield worker_redis_lease
    worker_redis_lease.clean()


@pytest.fixture
def worker_redis_url(_worker_redis_clean: Any) -> str:
    """A URL of this worker's Redis database, for application code that makes its own client.

    The database is emptied after the test (in prefix mode: the keys under
    ``worker_redis_prefix``). For session fixtures use ``worker_redis_lease.url``.
    """
    return str(_worker_redis_clean.url)


@pytest.fixture
def worker_redis_db(_worker_redis_clean: Any) -> int:
    """The index of this worker's leased Redis database, emptied after the test.

    No other worker, restarted worker or concurrent run holds it meanwhile. In
    prefix mode it is the shared database the prefixed keys live in.
    """
    return int(_worker_redis_clean.db)


@pytest.fixture
def worker_redis_prefix(_worker_redis_clean: Any) -> str:
    """A key and channel prefix private to this worker, such as ``wu:1a2b3c4d5e6f:gw0:``.

    In prefix mode applications must put it in front of every key; in both
    modes use it for pub/sub channel names, which Redis shares across databases.
    """
    return str(_worker_redis_clean.prefix)


@pytest.fixture
def worker_redis(_worker_redis_clean: Any) -> Any:
    """A redis-py client on this worker's database, emptied after the test.

    Never ``FLUSHALL``: cleanup is ``FLUSHDB`` on the leased index only, or in
    prefix mode ``SCAN`` + ``UNLINK`` of this worker's prefix. Every test of the
    worker gets the same client object (making one costs more than the
    cleanup); for other client options use ``worker_redis_url``.
    """
    return _worker_redis_clean.client()


@pytest.fixture
def worker_redis_async(_worker_redis_clean: Any) -> Iterator[Any]:
    """A ``redis.asyncio`` client on this worker's database, emptied after the test.

    A new client per test, because asyncio connections belong to the event
    loop that opened them. End the coroutine that uses it with ``await
    worker_redis_async.aclose()`` (or ``async with worker_redis_async:``): the
    test fails if it leaves connections open.
    """
    __tracebackhide__ = True
    import redis.asyncio

    client = redis.asyncio.Redis.from_url(_worker_redis_clean.url)
    yield client
    pool = client.connection_pool
    connections = [*pool._available_connections, *pool._in_use_connections]
    if any(getattr(connection, "is_connected", False) for connection in connections):
        pytest.fail(
            "worker_redis_async: the client still had open connections when the test ended; "
            "end the coroutine that uses it with `await worker_redis_async.aclose()` "
            "(or `async with worker_redis_async:`) while its event loop runs",
            pytrace=False,
        )


# --- Runtime guard ---
# Off by default: the guard's hooks exist only once _configure_guard registers them.

_GUARD_PLUGIN = "worker_utils.guard"


def _add_guard_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("worker_utils")
    group.addoption(
        "--worker-utils-guard",
        dest="worker_utils_guard",
        nargs="?",
        const="warn",
        default=None,
        metavar="MODE",
        help="Report tests that leak os.environ, cwd or sys.path, and misplaced autouse "
        "fixtures: warn (the default when given) or strict",
    )
    parser.addini(
        "worker_utils_guard",
        "Runtime guard mode: off (the default), warn or strict",
        default="off",
    )
    parser.addini(
        "worker_utils_guard_ignore_env",
        "Environment variables the guard never reports, as fnmatch patterns such as MYAPP_*",
        type="args",
        default=[],
    )


def _configure_guard(config: pytest.Config) -> None:
    __tracebackhide__ = True
    from worker_utils import guard

    setting, text = _setting(config, "guard")
    try:
        mode = guard.parse_mode(text, setting=setting)
    except ValueError as exc:
        raise pytest.UsageError(str(exc)) from None
    if mode != "off":
        workerinput = getattr(config, "workerinput", None)
        first_worker = workerinput is None or workerinput.get("workerid") == "gw0"
        config.pluginmanager.register(
            guard.Guard(
                mode, config.getini("worker_utils_guard_ignore_env"), first_worker=first_worker
            ),
            _GUARD_PLUGIN,
        )


# --- PostgreSQL ---
# Logic lives in worker_utils.postgres and worker_utils.servers.postgres; psycopg
# is imported only when a PostgreSQL fixture is used.

_PG_MARKER = "worker_postgres"
_PG_RESET_CHOICES = ("auto", *postgres.RESET_MODES)


class _PostgresSettings:
    """The run's PostgreSQL settings, read once in every process."""

    def __init__(self, config: pytest.Config) -> None:
        __tracebackhide__ = True
        self.url_setting, url = _setting(config, "postgres_url", postgres.URL_VAR)
        self.url: str | None = url or None
        self.prefix: str = config.getini("worker_utils_postgres_prefix")
        self.mode: str = config.getini("worker_utils_postgres_mode")
        self.reset: str = config.getini("worker_utils_postgres_reset")
        self.extensions: list[str] = config.getini("worker_utils_postgres_extensions")
        self.extension_schema: str = config.getini("worker_utils_postgres_extension_schema")
        try:
            postgres.worker_postgres_name("0" * 10, "gw0", self.prefix)
        except ValueError as exc:
            raise pytest.UsageError(str(exc)) from None
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


def _add_postgres_options(parser: pytest.Parser) -> None:
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


def _configure_postgres(config: pytest.Config) -> None:
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


@pytest.fixture(scope="session")
def worker_postgres_url(request: pytest.FixtureRequest) -> str:
    """The PostgreSQL server of this run: the configured URL, else an embedded server.

    Configured by ``--worker-utils-postgres-url``, ``$WORKER_UTILS_POSTGRES_URL``
    or the ``worker_utils_postgres_url`` ini option, in that order. Without any,
    one throwaway server is started for the whole run from the local PostgreSQL
    binaries and stopped when the run ends.
    """
    __tracebackhide__ = True
    settings = _pg_settings(request)
    if settings.url:
        return settings.url
    from worker_utils.servers import postgres as server
    from worker_utils.servers._process import ServerStartError

    workers = _worker.get_worker_count()
    try:
        value = coordination.run_once(
            server.RUN_ONCE_KEY,
            functools.partial(
                server.start_server,
                max_connections=max(100, 20 + workers * postgres.CONNECTIONS_PER_WORKER),
            ),
            teardown=server.stop_server,
            run_dir=_run(request).directory,
        )
    except (ServerStartError, coordination.RunOnceError) as exc:
        error = str(exc)
    else:
        return str(value["url"])
    _pg_fail(settings, error)


@pytest.fixture(scope="session")
def worker_postgres_setup() -> Callable[[Any], object] | None:
    """The fixture you want to override: a function that builds the tables of a namespace.

    Return a function taking a psycopg connection; it runs once per run, in a
    template schema (or database) that every worker's namespace is copied from,
    and is committed. Tables, sequences, indexes, constraints, rows and views are
    copied; a template holding functions, types or triggers is not, and each
    worker runs the function itself instead. The default builds nothing::

        @pytest.fixture(scope="session")
        def worker_postgres_setup():
            def migrate(conn):
                conn.execute("CREATE TABLE item (id serial PRIMARY KEY, name text)")
            return migrate
    """
    return None


@pytest.fixture(scope="session")
def worker_postgres_namespace(
    request: pytest.FixtureRequest,
    worker_postgres_url: str,
    worker_postgres_setup: Callable[[Any], object] | None,
) -> Iterator[postgres.WorkerNamespace]:
    """This worker's schema (or database), created for the session and dropped after it.

    Its ``name`` is ``<prefix>_<run tag>_<worker id>``, such as
    ``test_worker_3f2a9c01be_gw0``: ``get_worker_postgres_schema()`` plus a tag of
    the run id, so concurrent runs sharing a server never collide. Its ``dsn``
    lands new connections in it; nothing is reset between tests at this scope.
    """
    __tracebackhide__ = True
    settings = _pg_settings(request)
    run = _run(request)
    namespace = postgres.WorkerNamespace(
        worker_postgres_url,
        postgres.worker_postgres_name(run.uid, prefix=settings.prefix),
        run.uid,
        kind=settings.mode,
        extension_schema=settings.extension_schema,
        extensions=settings.extensions if settings.mode == "database" else (),
    )
    try:
        if settings.extensions and settings.mode == "schema":
            coordination.run_once(
                "worker-utils-postgres-extensions",
                functools.partial(
                    postgres.create_extensions,
                    worker_postgres_url,
                    settings.extensions,
                    settings.extension_schema,
                ),
                run_dir=run.directory,
            )
        template = None
        if worker_postgres_setup is not None:
            # Built once per run; each worker copies it (or, when it holds objects a
            # schema copy cannot reproduce, runs the setup itself).
            template = coordination.run_once(
                "worker-utils-postgres-template",
                functools.partial(
                    postgres.build_template,
                    worker_postgres_url,
                    run.uid,
                    settings.prefix,
                    settings.mode,
                    settings.extension_schema,
                    worker_postgres_setup,
                    settings.extensions if settings.mode == "database" else (),
                ),
                teardown=postgres.drop_template,
                run_dir=run.directory,
            )
        namespace.create(template=template)
        if template is not None and not template["clonable"]:
            run.report.note("postgres setup", f"per worker: {template['reason']}")
            with namespace.connect() as conn:
                worker_postgres_setup(conn)  # type: ignore[misc]
            namespace.snapshot()  # the setup's rows survive delete and truncate resets
        elif namespace.seeded:
            namespace.snapshot()
    except (postgres.PostgresError, coordination.RunOnceError) as exc:
        namespace.drop()
        error = str(exc)
    else:
        run.report.note("postgres", namespace.name)
        yield namespace
        namespace.drop()
        return
    _pg_fail(settings, error)


@pytest.fixture(scope="session")
def worker_postgres_schema(worker_postgres_namespace: postgres.WorkerNamespace) -> str:
    """The name of the schema this worker's tables live in, such as ``test_worker_3f2a9c01be_gw0``.

    In database mode it is ``public`` of the worker's own database.
    """
    return worker_postgres_namespace.schema


class _PostgresReset:
    """How the current test's changes are undone; set from the marker, the ini option or auto."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.leaked = False  # a transaction-mode test committed: fall back to delete


def _reset_mode(request: pytest.FixtureRequest, settings: _PostgresSettings) -> str:
    __tracebackhide__ = True
    marker = request.node.get_closest_marker(_PG_MARKER)
    mode = settings.reset
    if marker is not None:
        unknown = sorted(set(marker.kwargs) - {"reset"})
        if unknown or len(marker.args) > 1 or (marker.args and "reset" in marker.kwargs):
            pytest.fail(
                f"@pytest.mark.{_PG_MARKER}: takes one argument, reset= (or one positional "
                f"value); got {', '.join(unknown) or 'more than one value'}",
                pytrace=False,
            )
        mode = marker.kwargs.get("reset", marker.args[0] if marker.args else mode)
        if mode not in _PG_RESET_CHOICES:
            pytest.fail(
                f"@pytest.mark.{_PG_MARKER}: reset={mode!r}; use one of "
                f"{', '.join(_PG_RESET_CHOICES)}",
                pytrace=False,
            )
    if mode == "auto":
        # Connections the application opens from the DSN commit for real: only a
        # test that keeps to the fixture's own connections can be rolled back.
        names = request.fixturenames
        own = "worker_postgres" in names or "worker_postgres_async" in names
        return "transaction" if own and "worker_postgres_dsn" not in names else "delete"
    return mode


@pytest.fixture
def _worker_postgres_reset(
    request: pytest.FixtureRequest, worker_postgres_namespace: postgres.WorkerNamespace
) -> Iterator[_PostgresReset]:
    state = _PostgresReset(_reset_mode(request, request.config.stash[_pg_key]))
    _before_test(worker_postgres_namespace, state)
    yield state
    _after_test(worker_postgres_namespace, state)


def _before_test(namespace: postgres.WorkerNamespace, state: _PostgresReset) -> None:
    if state.mode in ("delete", "truncate") and namespace.sequences_advanced:
        namespace.reset(state.mode)  # a rolled-back test moved sequences on


def _after_test(namespace: postgres.WorkerNamespace, state: _PostgresReset) -> None:
    if state.mode in ("delete", "truncate"):
        namespace.reset(state.mode)
    elif state.leaked:
        namespace.reset("delete")
    elif state.mode == "transaction":
        namespace.sequences_advanced = True


@pytest.fixture
def worker_postgres_dsn(
    worker_postgres_namespace: postgres.WorkerNamespace, _worker_postgres_reset: _PostgresReset
) -> str:
    """A libpq connection string whose connections land in this worker's schema.

    The search path travels in ``options=-csearch_path=<schema>,public``, so
    application code that opens its own connections (an ORM engine, a pool) is
    isolated too. The test's rows are deleted after it (reset ``delete``) unless
    the ``worker_postgres`` marker or ``worker_utils_postgres_reset`` says otherwise.
    """
    return worker_postgres_namespace.dsn


@pytest.fixture(scope="session")
def _worker_postgres_connection(
    worker_postgres_namespace: postgres.WorkerNamespace,
) -> Iterator[postgres.SharedConnection]:
    connection = postgres.SharedConnection(worker_postgres_namespace)
    yield connection
    connection.close()


@pytest.fixture
def worker_postgres(
    request: pytest.FixtureRequest, _worker_postgres_connection: postgres.SharedConnection
) -> Iterator[Any]:
    """A psycopg connection in this worker's schema; by default the test runs in a transaction.

    Everything the test does is rolled back after it (reset ``transaction``);
    code under test that uses ``with conn.transaction():`` on this connection
    gets a savepoint inside that transaction. With another reset mode
    (``@pytest.mark.worker_postgres(reset="delete")``) the connection is a plain
    one and the test may commit.
    """
    shared = _worker_postgres_connection
    # Alone, this fixture does the reset itself: one fixture less per test. With
    # worker_postgres_dsn or the async twin, the shared reset fixture does it.
    alone = "_worker_postgres_reset" not in request.fixturenames
    if alone:
        state = _PostgresReset(_reset_mode(request, request.config.stash[_pg_key]))
        _before_test(shared.namespace, state)
    else:
        state = request.getfixturevalue("_worker_postgres_reset")
    transaction = state.mode == "transaction"
    conn = shared.begin(transaction=transaction)
    yield conn
    state.leaked = shared.end(transaction=transaction) or state.leaked
    if alone:
        _after_test(shared.namespace, state)


@pytest.fixture
def worker_postgres_async(
    worker_postgres_namespace: postgres.WorkerNamespace, _worker_postgres_reset: _PostgresReset
) -> Iterator[postgres.AsyncConnector]:
    """The async twin of ``worker_postgres``: ``async with worker_postgres_async() as conn:``.

    Each block opens a psycopg ``AsyncConnection`` in this worker's schema, in
    the running event loop (pytest-asyncio, anyio or ``asyncio.run``); by
    default it runs inside a transaction that is rolled back when the block ends.
    """
    connector = postgres.AsyncConnector(
        worker_postgres_namespace, transaction=_worker_postgres_reset.mode == "transaction"
    )
    yield connector
    _worker_postgres_reset.leaked = _worker_postgres_reset.leaked or connector.leaked
