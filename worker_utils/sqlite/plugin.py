"""Options and fixtures of the SQLite package: a database file per worker, reset after tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from worker_utils import _export, _handover, _settings, sqlite
from worker_utils._plugin import Run, fail, get_run, pop_stash
from worker_utils.run import coordination, paths

_RESET_CHOICES = ("auto", *sqlite.RESET_MODES)
_FILE = "sqlite.db"

PRAGMAS = _settings.Setting[sqlite.Pragmas](
    name="sqlite_pragmas",
    help="PRAGMAs applied on every connection that worker_sqlite fixtures and "
    "worker_utils.sqlite.connect open",
    accepted="name=value pairs separated by spaces or commas, "
    "such as 'journal_mode=WAL foreign_keys=ON'",
    parse=sqlite.parse_pragmas,
    default=sqlite.DEFAULT_PRAGMAS,
    default_text=" ".join(f"{name}={value}" for name, value in sqlite.DEFAULT_PRAGMAS),
    metavar="PRAGMAS",
    multiple=True,
)
RESET = _settings.Setting[str](
    name="sqlite_reset",
    help="How worker_sqlite tests are undone (auto: transaction with worker_sqlite alone, "
    "restore with worker_sqlite_path or worker_sqlite_url)",
    accepted=_settings.one_of(_RESET_CHOICES),
    parse=_settings.choice(_RESET_CHOICES),
    default="auto",
    metavar="MODE",
)
ENV = _export.env_setting(
    "sqlite",
    "this worker's SQLite database (url: sqlite:///PATH, or its path)",
    ("url", "path"),
    "DATABASE_URL or DB_PATH:path",
)
SETTINGS: list[_settings.Setting[Any]] = [PRAGMAS, RESET, ENV]
_FILE = "sqlite.db"


def pytest_addoption(parser: pytest.Parser) -> None:
    _settings.add_settings(parser, SETTINGS)


_reset_key = pytest.StashKey[str]()
_exports_key = pytest.StashKey[bool]()
#: Whether the last test's changes were undone (False after a test with reset none).
_undone_key = pytest.StashKey[bool]()


@pytest.hookimpl
def pytest_worker_utils_export(config: pytest.Config, run: Run, controller: bool) -> None:
    exports = _settings.resolve(config, ENV).value
    if not exports:
        return  # no worker directory to make: a run that never uses one has none to remove
    # worker_sqlite_database makes it before any test (in a controller, never).
    path = paths.worker_tmp_path() / _FILE
    for export in exports:
        run.set_env(export.name, f"sqlite:///{path}" if export.form == "url" else str(path))


def pytest_configure(config: pytest.Config) -> None:
    sqlite._set_pragmas(_settings.resolve(config, PRAGMAS).value)
    config.stash[_reset_key] = _settings.resolve(config, RESET).value
    config.stash[_exports_key] = bool(_settings.resolve(config, ENV).value)


def pytest_sessionfinish(session: pytest.Session) -> None:
    get_run(session.config).report.plan("sqlite", str(paths.worker_dir() / _FILE))


@pytest.fixture(scope="session")
def worker_sqlite_setup() -> Callable[[Any], object] | None:
    """The fixture you want to override: a function that builds the template database.

    Return a function taking a ``sqlite3`` connection; it runs once per run on a
    template file (with the PRAGMAs applied) and is committed. Every worker
    copies that file, and every test starts from its state. The default builds
    nothing::

        @pytest.fixture(scope="session")
        def worker_sqlite_setup():
            def migrate(conn):
                conn.execute("CREATE TABLE item (id INTEGER PRIMARY KEY, name TEXT)")
            return migrate
    """
    return None


@pytest.fixture(scope="session")
def worker_sqlite_database(
    request: pytest.FixtureRequest, worker_sqlite_setup: Callable[[Any], object] | None
) -> Iterator[sqlite.WorkerDatabase]:
    """This worker's database for the session: its ``path``, ``url`` and ``connect()``.

    A :class:`worker_utils.sqlite.WorkerDatabase`, for session fixtures that
    configure an application once. Rows those fixtures write are undone by the
    first test's reset: seed data belongs in ``worker_sqlite_setup``. In an
    isolated process it is the worker's file, made by the worker.
    """
    __tracebackhide__ = True
    config = request.config
    run = get_run(config)
    database = config.stash.get(_database_key, None)
    if database is None:
        try:
            template = coordination.run_once(
                "worker-utils-sqlite-template",
                lambda: sqlite.build_template(
                    run.directory / "sqlite-template.db", worker_sqlite_setup
                ),
                run_dir=run.directory,
            )
            held = _handover.given(config, "sqlite") or _handover.ask(
                config, "sqlite", {"template": str(template)}
            )
            database = _database(config, held["path"] if held else None, template)
        except (sqlite.SqliteError, coordination.RunOnceError, _handover.HandoverError) as exc:
            fail(exc)
    yield database
    _close(config)


_database_key = pytest.StashKey[sqlite.WorkerDatabase]()


def _database(
    config: pytest.Config, borrowed: str | None, template: str | Path
) -> sqlite.WorkerDatabase:
    """This worker's database: a copy of ``template`` made here, or the worker's at ``borrowed``."""
    if borrowed is not None:
        database = sqlite.WorkerDatabase.borrow(Path(borrowed))
    else:
        database = sqlite.WorkerDatabase(paths.worker_tmp_path() / _FILE, template)
        get_run(config).report.note("sqlite", str(database.path))
    config.stash[_database_key] = database
    return database


def _close(config: pytest.Config) -> None:
    database = pop_stash(config, _database_key)
    if database is not None:
        database.close()


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    # Made for an isolated process, when no fixture here asked for it.
    _close(config)
    sqlite._set_pragmas(sqlite.DEFAULT_PRAGMAS)


@pytest.fixture(scope="session", autouse=True)
def _worker_sqlite_export(request: pytest.FixtureRequest) -> None:
    # The exported path names this worker's file: make it before the first test.
    if request.config.stash[_exports_key]:
        request.getfixturevalue("worker_sqlite_database")


def _reset_mode(config: pytest.Config, names: Sequence[str]) -> str:
    """How a test that uses the fixtures ``names`` is undone."""
    mode = config.stash[_reset_key]
    if mode == "auto":
        # Connections the application opens commit for real, and in WAL a
        # transaction on the fixture's connection would not see their rows. An
        # exported path (worker_utils_sqlite_env) reaches the application in every test.
        by_path = "worker_sqlite_path" in names or "worker_sqlite_url" in names
        return "restore" if by_path or config.stash[_exports_key] else "transaction"
    return mode


@pytest.fixture
def _worker_sqlite_reset(
    request: pytest.FixtureRequest, worker_sqlite_database: sqlite.WorkerDatabase
) -> Iterator[str]:
    __tracebackhide__ = True
    mode = _reset_mode(request.config, request.fixturenames)
    if worker_sqlite_database.borrowed:
        # An isolated process: its worker restores the file around the test.
        yield mode
        if worker_sqlite_database.connection.in_transaction:
            worker_sqlite_database.connection.rollback()
        return
    if mode != "none" and worker_sqlite_database.changed():
        # Left by a test with reset none, or whose restore failed.
        _reset(worker_sqlite_database)
    yield mode
    request.config.stash[_undone_key] = False
    _reset(worker_sqlite_database, restore=mode != "none")
    request.config.stash[_undone_key] = mode != "none"


@pytest.fixture(autouse=True)
def _worker_sqlite_export_reset(request: pytest.FixtureRequest) -> None:
    # The application opens the exported file in every test: undo each test,
    # not only those that ask for a SQLite fixture.
    config = request.config
    if not config.stash[_exports_key]:
        return
    database: sqlite.WorkerDatabase = request.getfixturevalue("worker_sqlite_database")
    if not database.borrowed and database.changed() and config.stash.get(_undone_key, True):
        # Written since the last test was undone, before this test's function
        # fixtures (an autouse fixture of a plugin's comes first): by session or
        # module fixtures (create_all in a session fixture). What tests start from.
        database.rebase()
    if "_worker_sqlite_reset" not in request.fixturenames:
        request.getfixturevalue("_worker_sqlite_reset")


@pytest.hookimpl
def pytest_worker_utils_held(config: pytest.Config) -> dict[str, Any] | None:
    database = config.stash.get(_database_key, None)
    return None if database is None else {"sqlite": {"path": str(database.path)}}


@pytest.hookimpl
def pytest_worker_utils_provide(
    config: pytest.Config, name: str, request: dict[str, Any]
) -> dict[str, Any] | None:
    if name != "sqlite":
        return None
    database = config.stash.get(_database_key, None) or _database(config, None, request["template"])
    return {"path": str(database.path)}


def _isolated_mode(item: pytest.Item) -> str | None:
    """How the isolated test ``item`` is undone; None if it uses no SQLite fixture."""
    names = getattr(item, "fixturenames", ())
    uses = "_worker_sqlite_reset" in names or item.config.stash[_exports_key]
    if not uses or _database_key not in item.config.stash:
        return None
    return _reset_mode(item.config, names)


@pytest.hookimpl
def pytest_worker_utils_before_isolated(item: pytest.Item) -> str | None:
    mode = _isolated_mode(item)
    database = item.config.stash.get(_database_key, None)
    if mode is None or mode == "none" or database is None or not database.changed():
        return None
    try:
        database.reset()  # left by a test with reset none, or whose restore failed
    except sqlite.SqliteError as exc:
        return str(exc)
    return None


@pytest.hookimpl
def pytest_worker_utils_after_isolated(item: pytest.Item) -> str | None:
    mode = _isolated_mode(item)
    database = item.config.stash.get(_database_key, None)
    if mode is None or database is None:
        return None
    try:
        database.reset(restore=mode != "none")
    except sqlite.SqliteError as exc:
        return str(exc)
    return None


def _reset(database: sqlite.WorkerDatabase, *, restore: bool = True) -> None:
    __tracebackhide__ = True
    try:
        database.reset(restore=restore)
    except sqlite.SqliteError as exc:
        fail(exc)


@pytest.fixture
def worker_sqlite_path(
    worker_sqlite_database: sqlite.WorkerDatabase, _worker_sqlite_reset: str
) -> Path:
    """The path of this worker's SQLite file, such as ``<run dir>/workers/gw0/sqlite.db``.

    No other worker or run uses it. Open it with :func:`worker_utils.sqlite.connect`
    for the production PRAGMAs. Whatever the test committed is undone after it
    (reset ``restore``), so each test starts from ``worker_sqlite_setup``'s state.
    """
    return worker_sqlite_database.path


@pytest.fixture
def worker_sqlite_url(
    worker_sqlite_database: sqlite.WorkerDatabase, _worker_sqlite_reset: str
) -> str:
    """``sqlite:///<worker_sqlite_path>``, for SQLAlchemy and other code that takes a URL.

    Give an engine the PRAGMAs with
    ``sqlalchemy.event.listen(engine, "connect", worker_utils.sqlite.on_connect)``.
    Undone after the test like ``worker_sqlite_path``.
    """
    return worker_sqlite_database.url


@pytest.fixture
def worker_sqlite(worker_sqlite_database: sqlite.WorkerDatabase, _worker_sqlite_reset: str) -> Any:
    """A ``sqlite3`` connection on this worker's file, with the production PRAGMAs.

    Used alone, the test runs in a transaction that is rolled back after it
    (reset ``transaction``); beside ``worker_sqlite_path`` or ``worker_sqlite_url``
    it is a plain connection and the file is restored instead. Either way a
    test that commits is undone.
    """
    if _worker_sqlite_reset == "transaction":
        return worker_sqlite_database.begin()
    return worker_sqlite_database.connection
