"""The PostgreSQL fixtures: a namespace per worker, connections into it, resets after tests."""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from worker_utils import _handover, _worker, postgres
from worker_utils._handover import HandoverError
from worker_utils._plugin import fail, get_run, pop_stash
from worker_utils.postgres._budget import plugin_application_name
from worker_utils.postgres._namespace import kind_of
from worker_utils.postgres.plugin import (
    _PG_MARKER,
    _PG_RESET_CHOICES,
    WorkerUtilsPostgresWarning,
    _pg_fail,
    _pg_key,
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
    In an isolated process it is the worker's own, made by the worker.
    """
    __tracebackhide__ = True
    config = request.config
    settings = _pg_settings(request)
    worker = _ready(config)
    if worker is None:
        _drop(config)  # one whose isolated process died before its setup was done
        server_url, setup = worker_postgres_server_url, worker_postgres_setup
        try:
            template = _template(config, settings, server_url, setup)
            worker = _from_worker(config, server_url, template, setup)
            if worker is None:
                worker = _create(config, server_url, template)
                _finish(worker, setup)
        except (postgres.PostgresError, coordination.RunOnceError, HandoverError) as exc:
            _drop(config)
            _pg_fail(settings, exc)
    try:
        yield worker.namespace
    finally:
        _drop(config)


def _template(
    config: pytest.Config,
    settings: _PostgresSettings,
    server_url: str,
    setup: Callable[[Any], object] | None,
) -> dict[str, Any] | None:
    """The run's extensions and template, built once per run by whichever process comes first."""
    run = get_run(config)
    if settings.extensions and kind_of(settings.mode).extensions_per_run:
        coordination.run_once(
            "worker-utils-postgres-extensions",
            functools.partial(
                postgres.create_extensions,
                server_url,
                settings.extensions,
                settings.extension_schema,
                slot_wait=settings.slot_wait,
                application_name=plugin_application_name(
                    postgres.worker_postgres_name(run.uid, prefix=settings.prefix)
                ),
            ),
            run_dir=run.directory,
        )
    if setup is None:
        return None
    # Built once per run; each worker copies it (or, when it holds objects a
    # schema copy cannot reproduce, runs the setup itself).
    template: dict[str, Any] = coordination.run_once(
        "worker-utils-postgres-template",
        functools.partial(
            postgres.build_template,
            server_url,
            run.uid,
            settings.prefix,
            settings.mode,
            settings.extension_schema,
            setup,
            settings.extensions,
            settings.slot_wait,
        ),
        teardown=postgres.drop_template,
        run_dir=run.directory,
    )
    return template


def _create(
    config: pytest.Config, server_url: str, template: dict[str, Any] | None
) -> _PostgresWorker:
    """Create this worker's namespace, a copy of ``template``; :func:`_finish` makes it ready.

    It is the worker's from now on, whoever asked for it: dropped at session end.
    """
    settings = config.stash[_pg_key]
    run = get_run(config)
    namespace = postgres.WorkerNamespace(
        server_url,
        postgres.worker_postgres_name(run.uid, prefix=settings.prefix),
        run.uid,
        kind=settings.mode,
        extension_schema=settings.extension_schema,
        extensions=settings.extensions,
        lock_timeout=settings.lock_timeout,
        slot_wait=settings.slot_wait,
    )
    worker = config.stash[_worker_key] = _PostgresWorker(namespace, settings)
    namespace.create(template=template)
    if template is not None and not template["clonable"]:
        worker.setup_needed = True
        run.report.note("postgres setup", f"per worker: {template['reason']}")
    run.report.note("postgres", namespace.name)
    run.report.note_server("postgres", server_url, _origin(config, settings, server_url))
    return worker


def _finish(worker: _PostgresWorker, setup: Callable[[Any], object] | None) -> None:
    """Run the setup a template could not carry (unless another process did), take the baseline.

    From now on every test of this worker is reset, whatever fixtures it asked for.
    """
    namespace = worker.namespace
    if worker.setup_needed:
        if setup is not None:
            with namespace.connect() as conn:
                setup(conn)
        namespace.snapshot()  # the setup's rows survive delete and truncate resets
    elif namespace.seeded:
        namespace.snapshot()
    namespace.prepare()
    worker.ready = True


def _from_worker(
    config: pytest.Config,
    server_url: str,
    template: dict[str, Any] | None,
    setup: Callable[[Any], object] | None,
) -> _PostgresWorker | None:
    """In an isolated process, the worker's namespace, which the worker makes if it has none."""
    held = _handover.ask(config, "postgres", {"server_url": server_url, "template": template})
    if held is None:
        return None
    if held["setup"]:  # the template could not carry it: the worker has no setup to run
        namespace = postgres.WorkerNamespace.borrow(held)
        try:
            with namespace.connect() as conn:
                setup(conn)  # type: ignore[misc]
        finally:
            namespace.drop()
        held = _handover.ask(config, "postgres", {"setup_done": True})
        assert held is not None
    worker = _PostgresWorker(postgres.WorkerNamespace.borrow(held), config.stash[_pg_key])
    config.stash[_worker_key] = worker
    return worker


def _drop(config: pytest.Config) -> None:
    """Drop this worker's namespace (only close it, where borrowed), once."""
    worker = pop_stash(config, _worker_key)
    if worker is not None:
        worker.namespace.drop()


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    # After the session fixtures' teardown: a namespace made for an isolated
    # process when no fixture here asked for it.
    _drop(session.config)


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


def _origin(config: pytest.Config, settings: _PostgresSettings, url: str) -> str:
    if url == settings.url:
        return f"given by {settings.url_setting}"
    if url == settings.embedded_url:
        from worker_utils.servers import plugin as servers

        return servers.origin(config, "postgres")
    return "given by the worker_postgres_server_url fixture"  # overridden by the project


@pytest.fixture(scope="session")
def worker_postgres_scratch_database(
    request: pytest.FixtureRequest, worker_postgres_namespace: postgres.WorkerNamespace
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
            if worker_postgres_namespace.borrowed:  # the worker holds the namespace's record
                found = _handover.ask(
                    request.config, "postgres_scratch", {"suffix": suffix, "create": create}
                )
                assert found is not None
                url: str = found["url"]
                return url
            return worker_postgres_namespace.scratch_database(suffix, create=create)
        except (ValueError, postgres.PostgresError, HandoverError) as exc:
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


def _reset_mode(node: pytest.Item, names: Sequence[str], settings: _PostgresSettings) -> str:
    """How the test ``node``, which uses the fixtures ``names``, is undone."""
    __tracebackhide__ = True
    marker = node.get_closest_marker(_PG_MARKER)
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
        # An exported URL (worker_utils_postgres_env) reaches the application in every test.
        own = "worker_postgres" in names or "worker_postgres_async" in names
        apart = settings.exported_url is not None or any(
            name in names for name in ("worker_postgres_url", "worker_postgres_dsn")
        )
        if not own or (mode == "auto" and apart):
            return "delete"
        return "transaction"
    return mode


@pytest.fixture(autouse=True)
def _worker_postgres_reset(request: pytest.FixtureRequest) -> Iterator[_PostgresReset | None]:
    # Autouse: once this worker's namespace exists, a test that asked for no
    # PostgreSQL fixture (its application uses an engine built in a session
    # fixture) is reset too. Until then it does nothing.
    worker = _ready(request.config)
    nodeid = request.node.nodeid
    if worker is None:
        yield None
        worker = _ready(request.config)
        if worker is not None and not worker.namespace.borrowed:  # made by getfixturevalue
            _after_test(worker, _PostgresReset("delete"), nodeid)
        return
    state = _PostgresReset(_reset_mode(request.node, request.fixturenames, worker.settings))
    worker.started(nodeid)
    if worker.namespace.borrowed:
        # An isolated process: its worker undoes the test, around it.
        yield state
        worker.leaked = state.leaked
        return
    _rebase(worker)
    _before_test(worker.namespace, state)
    yield state
    worker.undone = False
    _after_test(worker, state, nodeid)
    worker.undone = state.mode != "none"


_PACKAGE = Path(__file__).resolve().parents[1]  # worker_utils, however it is installed


def _projects(fixturedef: pytest.FixtureDef[Any]) -> bool:
    """Whether the fixture is the project's (a conftest's or a test module's), not a plugin's."""
    code = getattr(fixturedef.func, "__code__", None)
    return code is not None and _project_file(code.co_filename)


@functools.cache  # asked for every fixture of every test
def _project_file(filename: str) -> bool:
    path = Path(filename)
    installed = {"site-packages", "dist-packages"} & set(path.parts)
    return not installed and not path.is_relative_to(_PACKAGE)


@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup(fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest) -> Any:
    # What a session, module or class fixture stores (pytest-django's django_db_setup
    # override, create_all and its seed rows) stays for the tests that follow, as
    # it would without worker_utils: the baseline resets return to takes it in.
    worker = _ready(request.config)
    if worker is None or worker.namespace.borrowed:
        return (yield)
    if fixturedef.scope == "function":
        # What it stores, even before it requests a session fixture, is the test's:
        # a baseline taken from now on would keep it.
        worker.test_stored |= _projects(fixturedef)
        return (yield)
    if not worker.undone or worker.in_call or worker.test_stored:
        return (yield)
    namespace = worker.namespace
    if namespace.sequences_advanced:  # rolled-back tests moved sequences on: not a baseline
        namespace.reset("delete")
    before = namespace.wal_position()
    try:
        return (yield)
    finally:
        if before is None or namespace.wal_position() != before:
            namespace.snapshot()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    worker = _ready(item.config)
    if worker is not None:
        worker.test_stored = False  # before any fixture of this test is set up


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Any:
    worker = _ready(item.config)
    if worker is None:
        return (yield)
    worker.in_call = True
    try:
        return (yield)
    finally:
        worker.in_call = False


def pytest_fixture_post_finalizer(
    fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest
) -> None:
    worker = _ready(request.config)
    if worker is not None and fixturedef.scope != "function" and _projects(fixturedef):
        # What its teardown removed, the next test starts without (see _rebase).
        worker.rebase = True


def _rebase(worker: _PostgresWorker) -> None:
    """Take what a finished module or class fixture left as the baseline, before a test.

    The last test was undone before that fixture's teardown ran: what differs
    from the baseline now is the teardown's doing.
    """
    if worker.rebase and worker.undone:
        if worker.namespace.sequences_advanced:
            worker.namespace.reset("delete")  # what rolled-back tests moved on is no baseline
        worker.namespace.snapshot()
    worker.rebase = False


def _ready(config: pytest.Config) -> _PostgresWorker | None:
    """This worker's namespace, if it is made and its baseline taken."""
    worker = config.stash.get(_worker_key, None)
    return worker if worker is not None and worker.ready else None


_isolated_key = pytest.StashKey[_PostgresReset | None]()


@pytest.hookimpl
def pytest_worker_utils_held(config: pytest.Config) -> dict[str, Any] | None:
    held: dict[str, Any] = {}
    settings = config.stash.get(_pg_key, None)
    if settings is not None and settings.exported_url is not None:
        held["postgres_export"] = {"url": settings.exported_url}
    worker = _ready(config)
    if worker is not None:
        held["postgres"] = worker.namespace.handover()
    return held


@pytest.hookimpl
def pytest_worker_utils_provide(
    config: pytest.Config, name: str, request: dict[str, Any]
) -> dict[str, Any] | None:
    if name == "postgres_scratch":
        worker = _ready(config)
        assert worker is not None  # the isolated process borrowed it
        try:
            url = worker.namespace.scratch_database(request["suffix"], create=request["create"])
        except ValueError as exc:
            raise HandoverError(str(exc)) from None
        return {"url": url}
    if name != "postgres":
        return None
    settings = config.stash[_pg_key]
    if settings.failure is not None:
        raise HandoverError(settings.failure)
    worker = config.stash.get(_worker_key, None)
    try:
        if worker is not None and request.get("setup_done"):
            _finish(worker, None)  # the isolated process ran the setup
        elif worker is None or not worker.ready:
            _drop(config)  # one whose isolated process died before its setup was done
            worker = _create(config, request["server_url"], request["template"])
            if not worker.setup_needed:
                _finish(worker, None)
    except postgres.PostgresError as exc:
        _drop(config)
        settings.failure = str(exc)
        raise
    return {**worker.namespace.handover(), "setup": not worker.ready}


@pytest.hookimpl
def pytest_worker_utils_before_isolated(item: pytest.Item) -> str | None:
    worker = _ready(item.config)
    if worker is None:
        item.stash[_isolated_key] = None
        return None
    try:
        mode = _reset_mode(item, getattr(item, "fixturenames", ()), worker.settings)
    except pytest.fail.Exception:
        mode = "delete"  # a bad marker: the isolated process fails the test with it
    state = item.stash[_isolated_key] = _PostgresReset(mode)
    worker.started(item.nodeid)
    try:
        _before_test(worker.namespace, state)
    except postgres.PostgresError as exc:
        return str(exc)
    return None


@pytest.hookimpl
def pytest_worker_utils_after_isolated(item: pytest.Item, state: dict[str, Any]) -> str | None:
    worker = _ready(item.config)
    if worker is None:
        return None
    # None: the namespace was made during the test, as if by getfixturevalue.
    reset = item.stash.get(_isolated_key, None) or _PostgresReset("delete")
    reset.leaked = reset.leaked or bool(state.get("postgres", {}).get("leaked"))
    try:
        _after_test(worker, reset, item.nodeid)
    except postgres.PostgresError as exc:
        return str(exc)
    return None


@pytest.hookimpl
def pytest_worker_utils_give_back(config: pytest.Config) -> dict[str, Any] | None:
    worker = _ready(config)
    if worker is None or not worker.namespace.borrowed:
        return None
    leaked, worker.leaked = worker.leaked, False
    return {"postgres": {"leaked": leaked}}


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
