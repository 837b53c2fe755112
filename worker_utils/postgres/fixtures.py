"""The PostgreSQL fixtures: a namespace per worker, connections into it, resets after tests."""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from worker_utils import _worker, postgres
from worker_utils._plugin import fail, get_run
from worker_utils.postgres.plugin import (
    _PG_MARKER,
    _PG_RESET_CHOICES,
    WorkerUtilsPostgresWarning,
    _pg_fail,
    _pg_settings,
    _PostgresSettings,
    _PostgresWorker,
    _worker_key,
    export_mismatch,
    started_server_url,
)
from worker_utils.run import coordination


@pytest.fixture(scope="session")
def worker_postgres_server_url(request: pytest.FixtureRequest) -> str:
    """The PostgreSQL server of this run, shared by every worker: not isolated.

    Override it in a conftest to use a server of your own. Configured by
    ``--worker-utils-postgres-url``, ``$WORKER_UTILS_POSTGRES_URL``
    or the ``worker_utils_postgres_url`` ini option, in that order. Without any,
    one throwaway server is started for the whole run, from the local PostgreSQL
    binaries or, with ``--worker-utils-servers=docker``, as a container, and
    stopped when the run ends.
    """
    __tracebackhide__ = True
    settings = _pg_settings(request)
    if settings.url:
        return settings.url
    from worker_utils.servers import ServerStartError

    try:
        url = started_server_url(
            request.config, _worker.get_worker_count(), settings.app_connections
        )
    except ServerStartError as exc:
        error = str(exc)
    else:
        settings.embedded_url = url
        return url
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
    worker_postgres_server_url: str,
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
    run = get_run(request.config)
    namespace = postgres.WorkerNamespace(
        worker_postgres_server_url,
        postgres.worker_postgres_name(run.uid, prefix=settings.prefix),
        run.uid,
        kind=settings.mode,
        extension_schema=settings.extension_schema,
        extensions=settings.extensions,
        lock_timeout=settings.lock_timeout,
        slot_wait=settings.slot_wait,
    )
    try:
        if settings.extensions and namespace.extensions_per_run:
            coordination.run_once(
                "worker-utils-postgres-extensions",
                functools.partial(
                    postgres.create_extensions,
                    worker_postgres_server_url,
                    settings.extensions,
                    settings.extension_schema,
                    slot_wait=settings.slot_wait,
                    application_name=namespace.application_name,
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
                    worker_postgres_server_url,
                    run.uid,
                    settings.prefix,
                    settings.mode,
                    settings.extension_schema,
                    worker_postgres_setup,
                    settings.extensions,
                    settings.slot_wait,
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
        namespace.prepare()
    except (postgres.PostgresError, coordination.RunOnceError) as exc:
        namespace.drop()
        _pg_fail(settings, exc)
    run.report.note("postgres", namespace.name)
    run.report.note_server(
        "postgres", worker_postgres_server_url, _origin(settings, worker_postgres_server_url)
    )
    # From now on every test of this worker is reset, whatever fixtures it asked for.
    request.config.stash[_worker_key] = _PostgresWorker(namespace, settings)
    try:
        yield namespace
    finally:
        del request.config.stash[_worker_key]
        namespace.drop()


@pytest.fixture(scope="session")
def worker_postgres_url(worker_postgres_namespace: postgres.WorkerNamespace) -> str:
    """The worker's own URL: ``postgresql://`` to its database, its schema first in the search path.

    Give it as it is to psycopg, psycopg2, SQLAlchemy (``create_engine(url)``;
    ``postgresql+psycopg://`` with ``render_url(url, "sqlalchemy")``) or any
    libpq client; the search path, ``lock_timeout`` and ``application_name``
    travel in its ``options`` query parameter. asyncpg reads no ``options``:
    ``worker_utils.postgres.render_url(url, driver="asyncpg")`` gives them as
    ``server_settings``. Session-scoped, so an engine or pool built once per
    worker may use it; each test's changes are undone all the same (reset
    ``delete`` unless the test uses ``worker_postgres`` alone). The server
    itself is ``worker_postgres_server_url``.
    """
    return worker_postgres_namespace.worker_url


def _origin(settings: _PostgresSettings, url: str) -> str:
    if url == settings.url:
        return f"given by {settings.url_setting}"
    if url == settings.embedded_url:
        return "embedded"
    return "given by the worker_postgres_server_url fixture"  # overridden by the project


@pytest.fixture(scope="session")
def worker_postgres_scratch_database(
    worker_postgres_namespace: postgres.WorkerNamespace,
) -> Callable[..., str]:
    """A factory of extra databases of this worker's own: ``url = factory("archive")``.

    Each is ``<worker namespace>_<suffix>`` (with the run tag, so concurrent
    runs never collide) and comes back as a URL like ``worker_postgres_url``'s.
    It is made empty, with an ownership record, unless ``create=False``: then
    only its name is handed out, for code under test that creates and drops
    databases itself. Either way it is dropped at the end of the session, and
    by the reaper after a crash. Not reset between tests.
    """

    def scratch_database(suffix: str, *, create: bool = True) -> str:
        __tracebackhide__ = True
        try:
            return worker_postgres_namespace.scratch_database(suffix, create=create)
        except (ValueError, postgres.PostgresError) as exc:
            fail(exc)

    return scratch_database


@pytest.fixture(scope="session", autouse=True)
def _worker_postgres_export(request: pytest.FixtureRequest) -> None:
    # The exported URL names this worker's namespace: make it before the first test.
    __tracebackhide__ = True
    settings = _pg_settings(request)
    if not settings.exports:
        return
    namespace: postgres.WorkerNamespace = request.getfixturevalue("worker_postgres_namespace")
    mismatch = export_mismatch(settings, namespace.worker_url)
    if mismatch is not None:
        _pg_fail(settings, mismatch)


@pytest.fixture(scope="session")
def worker_postgres_schema(worker_postgres_namespace: postgres.WorkerNamespace) -> str:
    """The name of the schema this worker's tables live in, such as ``test_worker_3f2a9c01be_gw0``.

    In database mode it is ``public`` of the worker's own database.
    """
    return worker_postgres_namespace.schema


class _PostgresReset:
    """How the current test's changes are undone; set from the marker, the ini option or auto."""

    __slots__ = ("leaked", "mode")

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
    if mode in ("auto", "transaction"):
        # Connections the application opens from the URL or DSN commit for real:
        # only a test that keeps to the fixture's own connections can be rolled back.
        names = request.fixturenames
        own = "worker_postgres" in names or "worker_postgres_async" in names
        apart = "worker_postgres_url" in names or "worker_postgres_dsn" in names
        if not own or (mode == "auto" and apart):
            return "delete"
        return "transaction"
    return mode


@pytest.fixture(autouse=True)
def _worker_postgres_reset(request: pytest.FixtureRequest) -> Iterator[_PostgresReset | None]:
    # Autouse: once this worker's namespace exists, a test that asked for no
    # PostgreSQL fixture (its application uses an engine built in a session
    # fixture) is reset too. Until then it does nothing.
    worker = request.config.stash.get(_worker_key, None)
    if worker is None:
        yield None
        worker = request.config.stash.get(_worker_key, None)
        if worker is not None:  # made during the test, by getfixturevalue
            _after_test(worker, _PostgresReset("delete"), request.node.nodeid)
        return
    state = _PostgresReset(_reset_mode(request, worker.settings))
    worker.started(request.node.nodeid)
    _before_test(worker.namespace, state)
    yield state
    _after_test(worker, state, request.node.nodeid)


def _before_test(namespace: postgres.WorkerNamespace, state: _PostgresReset) -> None:
    if state.mode in ("delete", "truncate") and namespace.sequences_advanced:
        namespace.reset(state.mode)  # a rolled-back test moved sequences on


def _after_test(worker: _PostgresWorker, state: _PostgresReset, nodeid: str) -> None:
    namespace = worker.namespace
    if state.mode in ("delete", "truncate") or state.leaked:
        ended = namespace.reset(state.mode if state.mode in ("delete", "truncate") else "delete")
        for backend in ended:
            warnings.warn(
                WorkerUtilsPostgresWarning(
                    f"worker_postgres: {worker.test_at(backend.began)} left a connection open "
                    f"in a transaction (pid {backend.pid}, application_name "
                    f"{backend.application_name!r}) holding a lock in {namespace.kind} "
                    f"{namespace.name}; the reset ended it: commit or close the connections "
                    f"a test opens before it ends"
                ),
                stacklevel=1,
            )
        for name in namespace.extensions_created():
            if name not in worker.reported:
                worker.reported.add(name)
                warnings.warn(
                    WorkerUtilsPostgresWarning(
                        f"worker_postgres: {nodeid} created extension {name!r} in "
                        f"{namespace.kind} {namespace.name}, which other workers do not see "
                        f"and which goes with it; add {name} to worker_utils_postgres_extensions "
                        f"to create it once for every worker"
                    ),
                    stacklevel=1,
                )
    elif state.mode == "transaction":
        namespace.sequences_advanced = True


@pytest.fixture(scope="session")
def worker_postgres_dsn(worker_postgres_namespace: postgres.WorkerNamespace) -> str:
    """``worker_postgres_url`` as a libpq ``key=value`` connection string.

    The search path travels in ``options=-csearch_path=<schema>,public``, so
    application code that opens its own connections (an ORM engine, a pool) is
    isolated too. Session-scoped; the test's rows are deleted after it (reset
    ``delete``) unless the ``worker_postgres`` marker or
    ``worker_utils_postgres_reset`` says otherwise.
    """
    return worker_postgres_namespace.dsn


@pytest.fixture(scope="session")
def _worker_postgres_connection(
    request: pytest.FixtureRequest, worker_postgres_namespace: postgres.WorkerNamespace
) -> Iterator[postgres.SharedConnection]:
    connection = postgres.SharedConnection(worker_postgres_namespace)
    request.config.stash[_worker_key].shared = connection
    yield connection
    connection.close()


@pytest.fixture
def worker_postgres(
    _worker_postgres_connection: postgres.SharedConnection, _worker_postgres_reset: _PostgresReset
) -> Iterator[Any]:
    """A psycopg connection in this worker's schema; by default the test runs in a transaction.

    Everything the test does is rolled back after it (reset ``transaction``);
    code under test that uses ``with conn.transaction():`` on this connection
    gets a savepoint inside that transaction. A test that commits, or switches
    to autocommit (which commits what it did so far), is undone by a delete
    reset instead. With another reset mode
    (``@pytest.mark.worker_postgres(reset="delete")``) the connection is a plain
    one and the test may commit.
    """
    shared, state = _worker_postgres_connection, _worker_postgres_reset
    transaction = state.mode == "transaction"
    conn = shared.begin(transaction=transaction)
    yield conn
    state.leaked = shared.end(transaction=transaction) or state.leaked


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
