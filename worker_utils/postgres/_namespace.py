"""A worker's namespace: its schema, or in database mode its database, for the life of the worker.

:class:`WorkerNamespace` makes it (with its ownership record), resets it after
tests and drops it. What differs between a schema and a database lives in two
implementations of :class:`NamespaceKind`, picked once by name: how the
namespace is created, found, dropped and emptied, and where connections land.
Nothing without a worker_utils record is ever dropped, truncated or emptied.
"""

from __future__ import annotations

import contextlib
import json
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

from worker_utils.postgres._budget import ServerUse, plugin_application_name, read_server_use
from worker_utils.postgres._clone import clone_schema, unclonable
from worker_utils.postgres._dsn import connect, first_line, namespace_dsn, psycopg_module
from worker_utils.postgres._errors import NamespaceNotOursError, PostgresError
from worker_utils.postgres._names import lock_key, parse_record, record, scratch_name
from worker_utils.postgres._reset import ResetError, Resetter
from worker_utils.postgres._urls import worker_url

if TYPE_CHECKING:
    import psycopg

__all__ = [
    "KINDS",
    "RESET_MODES",
    "DatabaseKind",
    "EndedBackend",
    "NamespaceKind",
    "SchemaKind",
    "WorkerNamespace",
    "create_extensions",
    "drop_scratch",
    "kind_of",
    "owner_lock",
]

#: How a test's changes are undone: see :meth:`WorkerNamespace.reset`.
RESET_MODES = ("transaction", "delete", "truncate", "none")
_LOCK_TIMEOUT = "2s"


class EndedBackend(NamedTuple):
    """A connection a reset ended because it held a lock in the namespace."""

    pid: int
    application_name: str
    #: When its open transaction began, in seconds since the epoch by the local clock.
    began: float | None


class NamespaceKind(ABC):
    """What a worker's namespace is: a schema (:class:`SchemaKind`) or a database.

    Stateless: one instance of each serves every namespace of its kind, picked
    by :func:`kind_of` from the ``kind`` setting or from an ownership record.
    """

    #: ``"schema"`` or ``"database"``: the setting's value and the record's ``kind``.
    name: ClassVar[str]
    #: The SQL keyword: ``SCHEMA`` or ``DATABASE``.
    keyword: ClassVar[str]
    #: Extensions are made once per run where every namespace reaches them; if
    #: False, :meth:`create` makes them in each namespace.
    extensions_per_run: ClassVar[bool]

    @abstractmethod
    def search_path(self, name: str, extension_schema: str) -> tuple[str, ...]:
        """The schemas a connection to namespace ``name`` looks in; empty for the default."""

    @abstractmethod
    def schema(self, name: str) -> str:
        """The schema the tables of namespace ``name`` land in."""

    @abstractmethod
    def dbname(self, name: str) -> str | None:
        """The database a connection to namespace ``name`` opens; None for the URL's own."""

    #: A query for the comment of the namespace named by its one parameter.
    comment_sql: ClassVar[str]

    def comment(self, conn: psycopg.Connection[Any], name: str) -> tuple[str | None] | None:
        """The comment of namespace ``name`` as a row, or None if no such namespace exists."""
        row: tuple[str | None] | None = conn.execute(self.comment_sql, [name]).fetchone()
        return row

    @abstractmethod
    def create(
        self,
        namespace: WorkerNamespace,
        keeper: psycopg.Connection[Any],
        owner: dict[str, Any],
        template: Mapping[str, Any] | None,
    ) -> None:
        """Create ``namespace`` with the record ``owner``, a copy of ``template`` if given.

        Sets the namespace's admin connection, that it was created (as soon as
        it exists, so that a failure after it still drops it) and ``seeded``.
        """

    @abstractmethod
    def drop(self, conn: psycopg.Connection[Any], name: str) -> None:
        """Drop namespace ``name``, ending whatever holds locks on it rather than waiting."""

    #: A query for the backends that may hold locks in the namespace named
    #: ``%(name)s``, other than those in ``%(own)s``: pid, application name and
    #: the start of their transaction.
    lockers_sql: ClassVar[str]

    def terminate_lockers(
        self, conn: psycopg.Connection[Any], name: str, own: Sequence[int] = ()
    ) -> list[tuple[int, str, float | None]]:
        """End the backends that hold locks in namespace ``name`` (not ``own``); return them."""
        with contextlib.suppress(psycopg_module().Error):
            rows = conn.execute(self.lockers_sql, {"name": name, "own": list(own)}).fetchall()
            for pid, *_ in rows:
                conn.execute("SELECT pg_terminate_backend(%s)", [pid])
            # Oldest transaction first: the order the tests that opened them ran in.
            rows.sort(key=lambda row: row[2] or 0.0)
            return [(pid, app or "", began) for pid, app, began in rows]
        return []

    @abstractmethod
    def resetter(self, name: str) -> Resetter:
        """A :class:`Resetter` for the schemas of namespace ``name``."""

    @abstractmethod
    def template_facts(self, template: WorkerNamespace) -> tuple[str | None, bool]:
        """What workers need to know of a built template: why it cannot be copied, if
        it cannot, and whether its copies hold rows before any test."""

    def lock_database(self, owner: Mapping[str, Any], current_db: str) -> str:
        """The database where the owner of a namespace holds its advisory lock."""
        return current_db

    @abstractmethod
    def release(self, conn: psycopg.Connection[Any], name: str) -> None:
        """Make namespace ``name``, kept for workers to copy, free to copy."""

    def foreign(self, owner: Mapping[str, Any], current_db: str) -> str | None:
        """Why a reaper connected to ``current_db`` must leave the namespace alone, if it must."""
        return None

    #: A SQL expression: may the current role create a namespace of this kind?
    may_create_sql: ClassVar[str]

    @abstractmethod
    def cannot_create(self, setting: str, user: str, database: str) -> str:
        """The preflight error for a role that may not create a namespace of this kind."""


class SchemaKind(NamespaceKind):
    """A schema in the URL's database: needs only ``CREATE`` on the database."""

    name = "schema"
    keyword = "SCHEMA"
    extensions_per_run = True
    comment_sql = "SELECT obj_description(oid, 'pg_namespace') FROM pg_namespace WHERE nspname = %s"
    may_create_sql = "has_database_privilege(current_database(), 'CREATE')"

    def search_path(self, name: str, extension_schema: str) -> tuple[str, ...]:
        if extension_schema and extension_schema != name:
            return (name, extension_schema)
        return (name,)

    def schema(self, name: str) -> str:
        return name

    def dbname(self, name: str) -> str | None:
        return None

    def create(
        self,
        namespace: WorkerNamespace,
        keeper: psycopg.Connection[Any],
        owner: dict[str, Any],
        template: Mapping[str, Any] | None,
    ) -> None:
        sql = psycopg_module().sql
        ident = sql.Identifier(namespace.name)
        with keeper.transaction():
            keeper.execute(sql.SQL("CREATE SCHEMA {}").format(ident))
            namespace._created = True
            keeper.execute(
                sql.SQL("COMMENT ON SCHEMA {} IS {}").format(ident, sql.Literal(json.dumps(owner)))
            )
            if template is not None:
                namespace.seeded = clone_schema(
                    keeper, template["name"], namespace.name, namespace.extension_schema
                )
        namespace._admin = keeper

    def drop(self, conn: psycopg.Connection[Any], name: str) -> None:
        psycopg = psycopg_module()
        sql = psycopg.sql
        statement = sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name))
        conn.execute(sql.SQL("SET lock_timeout = {}").format(sql.Literal(_LOCK_TIMEOUT)))
        for attempt in range(3):
            try:
                conn.execute(statement)
                return
            except psycopg.errors.LockNotAvailable:
                if attempt == 2:
                    raise
                # An idle-in-transaction connection the test leaked: end it, then retry.
                self.terminate_lockers(conn, name)

    # An idle connection (not in a transaction) holds no lock: pools stay connected.
    lockers_sql = """
        SELECT a.pid, a.application_name, extract(epoch FROM a.xact_start)::float8
        FROM pg_stat_activity a
        WHERE a.pid <> pg_backend_pid() AND a.pid <> ALL(%(own)s::int[])
          AND a.state IS DISTINCT FROM 'idle' AND a.backend_type = 'client backend'
          AND (a.application_name = %(name)s OR a.pid IN (
              SELECT l.pid FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
              WHERE c.relnamespace = to_regnamespace(%(name)s)))
        """

    def resetter(self, name: str) -> Resetter:
        return Resetter(lambda _: [name], database=False)

    def release(self, conn: psycopg.Connection[Any], name: str) -> None:
        pass  # a schema is copied by reading it: other sessions are no obstacle

    def template_facts(self, template: WorkerNamespace) -> tuple[str | None, bool]:
        # A copy counts the rows it copies itself.
        return unclonable(template._require_admin(), template.name), False

    def foreign(self, owner: Mapping[str, Any], current_db: str) -> str | None:
        if owner.get("database") != current_db:
            return f"its record names database {owner.get('database')!r}"
        return None

    def cannot_create(self, setting: str, user: str, database: str) -> str:
        return (
            f'{setting}: role "{user}" may not create schemas in database "{database}"; '
            f'GRANT CREATE ON DATABASE "{database}" TO "{user}", or point {setting} at a '
            f"database where it may"
        )


class DatabaseKind(NamespaceKind):
    """A database of its own: needs ``CREATEDB``; extensions are made in each one."""

    name = "database"
    keyword = "DATABASE"
    extensions_per_run = False
    comment_sql = "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s"
    may_create_sql = "(SELECT rolcreatedb OR rolsuper FROM pg_roles WHERE rolname = current_user)"

    def search_path(self, name: str, extension_schema: str) -> tuple[str, ...]:
        return ()

    def schema(self, name: str) -> str:
        return "public"

    def dbname(self, name: str) -> str | None:
        return name

    def create(
        self,
        namespace: WorkerNamespace,
        keeper: psycopg.Connection[Any],
        owner: dict[str, Any],
        template: Mapping[str, Any] | None,
    ) -> None:
        sql = psycopg_module().sql
        ident = sql.Identifier(namespace.name)
        owner["lockdb"] = owner["database"]
        create = sql.SQL("CREATE DATABASE {}").format(ident)
        if template is not None:
            create += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template["name"]))
            namespace.seeded = bool(template["seeded"])
        keeper.execute(create)
        namespace._created = True
        keeper.execute(
            sql.SQL("COMMENT ON DATABASE {} IS {}").format(ident, sql.Literal(json.dumps(owner)))
        )
        if namespace.lock_timeout and namespace.lock_timeout not in ("0", "0s", "0ms"):
            # Also the database's default: it holds where a pooler drops the URL's options.
            keeper.execute(
                sql.SQL("ALTER DATABASE {} SET lock_timeout = {}").format(
                    ident, sql.Literal(namespace.lock_timeout)
                )
            )
        admin = namespace._admin = namespace._connect(
            namespace_dsn(namespace.url, dbname=namespace.name)
        )
        if namespace.extensions and template is None:  # a copy has its template's extensions
            create_extensions(admin, namespace.extensions, namespace.extension_schema)
        if not namespace.template:
            # The worker keeps this one connection (ADR-0019): the lock moves in with it,
            # taken here before the record says so and released only when it closes.
            admin.execute("SELECT pg_advisory_lock(%s)", [owner["lock"]])
            owner["lockdb"] = namespace.name
            admin.execute(
                sql.SQL("COMMENT ON DATABASE {} IS {}").format(
                    ident, sql.Literal(json.dumps(owner))
                )
            )

    def drop(self, conn: psycopg.Connection[Any], name: str) -> None:
        sql = psycopg_module().sql
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )

    lockers_sql = """
        SELECT pid, application_name, extract(epoch FROM xact_start)::float8
        FROM pg_stat_activity
        WHERE datname = %(name)s AND pid <> pg_backend_pid() AND pid <> ALL(%(own)s::int[])
          AND state IS DISTINCT FROM 'idle' AND backend_type = 'client backend'
        """

    def resetter(self, name: str) -> Resetter:
        return Resetter(_user_schemas, database=True)

    def template_facts(self, template: WorkerNamespace) -> tuple[str | None, bool]:
        return None, template._reset_state().holds_rows(template._require_admin())

    def lock_database(self, owner: Mapping[str, Any], current_db: str) -> str:
        return str(owner.get("lockdb", current_db))

    def release(self, conn: psycopg.Connection[Any], name: str) -> None:
        # CREATE DATABASE ... TEMPLATE fails while any session is connected to the
        # template, and a pooler keeps the builder's server connections open after
        # the builder closed its own. Another role's session stays: the copy says so.
        with contextlib.suppress(psycopg_module().Error):
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                [name],
            )

    def cannot_create(self, setting: str, user: str, database: str) -> str:
        return (
            f'{setting}: role "{user}" may not create databases; ALTER ROLE "{user}" CREATEDB, '
            f"or set worker_utils_postgres_mode = schema"
        )


def sql_holders(lockers_sql: str) -> str:
    """Narrow a kind's lockers query to the connections that wait for nothing and hold a
    lock another connection may wait for: a table's, or their own transaction id (a write)."""
    return f"""
        SELECT * FROM ({lockers_sql}) AS lockers(pid, app, began)
        WHERE pid IN (
            SELECT a.pid FROM pg_stat_activity a JOIN pg_locks l ON l.pid = a.pid AND l.granted
            WHERE a.state = 'idle in transaction'
              AND (l.locktype = 'transactionid'
                   OR (l.locktype = 'relation' AND l.database = (
                       SELECT oid FROM pg_database WHERE datname = current_database())))
        )
        ORDER BY began
        """


def _user_schemas(conn: psycopg.Connection[Any]) -> list[str]:
    rows = conn.execute(
        "SELECT nspname FROM pg_namespace WHERE nspname !~ '^pg_' "
        "AND nspname <> 'information_schema'"
    ).fetchall()
    return [row[0] for row in rows]


_KINDS: dict[str, NamespaceKind] = {kind.name: kind for kind in (SchemaKind(), DatabaseKind())}
#: The values of ``worker_utils_postgres_mode``.
KINDS = tuple(_KINDS)


def kind_of(kind: str) -> NamespaceKind:
    """Return the :class:`NamespaceKind` named ``kind``: ``"schema"`` or ``"database"``.

    Raises:
        ValueError: Another name.
    """
    try:
        return _KINDS[kind]
    except KeyError:
        raise ValueError(
            f"worker_utils_postgres_mode: found {kind!r}; use one of {', '.join(KINDS)}"
        ) from None


@dataclass
class WorkerNamespace:
    """One worker's schema or database for the life of the worker.

    :meth:`create` makes it (with its ownership record) and takes its liveness
    lock; :meth:`reset` undoes a test's changes; :meth:`drop` removes it.

    Args:
        url: The server, as a libpq URL or connection string; in schema mode the
            schema is made in its database.
        name: From :func:`worker_postgres_name`.
        run_uid: The run id recorded as the owner.
        kind: ``"schema"`` or ``"database"``.
        extension_schema: Kept on the search path after the worker's schema, so
            that extension types and functions (installed there, usually in
            ``public``) stay reachable.

    Raises:
        ValueError: An unknown ``kind``.
    """

    url: str
    name: str
    run_uid: str
    kind: str = "schema"
    extension_schema: str = "public"
    #: Extensions to create in each new namespace, unless :attr:`extensions_per_run`.
    extensions: Sequence[str] = ()
    #: ``lock_timeout`` of the connections made from :attr:`dsn` and
    #: :attr:`worker_url` (``"5s"``); ``"0"`` or None leaves the server's.
    lock_timeout: str | None = None
    #: Seconds a connection of its own waits for a free slot on a full server.
    slot_wait: float = 0.0
    #: The run's template. In database mode it is copied with ``CREATE DATABASE ...
    #: TEMPLATE``, which allows no other connection to it: its lock stays outside.
    template: bool = False
    #: Backend pids of connections the fixtures hold open: never ended by a reset.
    own_pids: set[int] = field(default_factory=set, repr=False)
    #: The server's clock minus the local clock, in seconds, measured at :meth:`create`.
    clock_offset: float = field(default=0.0, repr=False)
    #: The connection held for the namespace's life: its lock, its resets, its drop.
    _keeper: psycopg.Connection[Any] | None = field(default=None, repr=False)
    #: The database the keeper is connected to, where it holds the lock.
    _lockdb: str = field(default="", repr=False)
    _admin: psycopg.Connection[Any] | None = field(default=None, repr=False)
    _resetter: Resetter | None = field(default=None, repr=False)
    #: Set when a test may have moved sequences on without leaving rows (a
    #: rolled-back transaction); the next ``delete`` test resets before it starts.
    sequences_advanced: bool = field(default=False, repr=False)
    #: Set by :meth:`create` when the copy of its template holds rows.
    seeded: bool = field(default=False, repr=False)
    _created: bool = field(default=False, repr=False)
    _owner: dict[str, Any] = field(default_factory=dict, repr=False)
    #: Databases handed out by :meth:`scratch_database`, dropped with the namespace.
    scratch: list[str] = field(default_factory=list, repr=False)
    #: Made and held by another process (see :meth:`borrow`): never created, reset or dropped here.
    borrowed: bool = field(default=False, repr=False)
    _kind: NamespaceKind = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._kind = kind_of(self.kind)

    @property
    def extensions_per_run(self) -> bool:
        """True in schema mode: extensions are per database, made once per run for all workers."""
        return self._kind.extensions_per_run

    @property
    def search_path(self) -> tuple[str, ...]:
        """The schemas a connection to this namespace looks in, first to last."""
        return self._kind.search_path(self.name, self.extension_schema)

    @property
    def schema(self) -> str:
        """The schema tables land in: the worker's own, or ``public`` of its own database."""
        return self._kind.schema(self.name)

    @property
    def dsn(self) -> str:
        """A connection string whose connections land in this namespace."""
        return namespace_dsn(
            self.url,
            dbname=self._kind.dbname(self.name),
            search_path=self.search_path,
            application_name=self.name,
            lock_timeout=self.lock_timeout,
        )

    @property
    def worker_url(self) -> str:
        """The ``postgresql://`` URL whose connections land in it: see :func:`worker_url`."""
        return worker_url(
            self.url,
            self.name,
            self.kind,
            application_name=self.name,
            extension_schema=self.extension_schema,
            lock_timeout=self.lock_timeout,
        )

    @property
    def application_name(self) -> str:
        """The ``application_name`` of worker_utils' own connections for this namespace."""
        return plugin_application_name(self.name)

    def _connect(self, url: str) -> psycopg.Connection[Any]:
        return connect(
            url, autocommit=True, wait=self.slot_wait, application_name=self.application_name
        )

    @property
    def database(self) -> str:
        """The database the namespace's tables live in."""
        own = self._kind.dbname(self.name)
        if own is not None:
            return own
        return str(psycopg_module().conninfo.conninfo_to_dict(self.url).get("dbname") or "")

    def handover(self) -> dict[str, Any]:
        """What :meth:`borrow` needs to use this namespace from another process: JSON."""
        return {
            "url": self.url,
            "name": self.name,
            "run_uid": self.run_uid,
            "kind": self.kind,
            "extension_schema": self.extension_schema,
            "extensions": list(self.extensions),
            "lock_timeout": self.lock_timeout,
            "clock_offset": self.clock_offset,
            "seeded": self.seeded,
        }

    @classmethod
    def borrow(cls, data: Mapping[str, Any]) -> WorkerNamespace:
        """The namespace another process of this worker made (its :meth:`handover`), to use here.

        Its connections land in the same schema or database. The process that
        made it keeps its lock and resets and drops it: :meth:`drop` here only
        closes what this process opened.
        """
        keys = ("url", "name", "run_uid", "kind", "extension_schema", "lock_timeout")
        return cls(
            **{key: data[key] for key in keys},
            extensions=tuple(data["extensions"]),
            clock_offset=data["clock_offset"],
            seeded=data["seeded"],
            borrowed=True,
        )

    def create(self, template: Mapping[str, Any] | None = None) -> None:
        """Take the namespace's liveness lock, then create it with its ownership record.

        A leftover of the same name and record (a previous run with the same run
        id, now dead: its lock was free) is dropped first.

        Args:
            template: What :func:`build_template` returned: the new namespace is a
                copy of it (when it is ``clonable``), and holds a shared lock on
                it so that no other run reaps it while this worker lives.

        Raises:
            NamespaceNotOursError: The name is taken by a schema or database that
                worker_utils did not create.
            PostgresError: A live process of another run holds the name.
        """
        sql = psycopg_module().sql
        keeper = self._keeper = self._connect(self.url)
        if not keeper.execute(
            "SELECT pg_try_advisory_lock(%s)", [lock_key(self.kind, self.name)]
        ).fetchone()[0]:  # type: ignore[index]
            raise PostgresError(
                f'worker_postgres: {self.kind} "{self.name}" is in use by a live run with the '
                f"same run id; give each concurrent run its own --testrunuid"
            )
        if template is not None:
            keeper.execute(
                "SELECT pg_advisory_lock_shared(%s)", [lock_key(self.kind, template["name"])]
            )
        before = time.time()
        current_db, server_now = keeper.execute(
            "SELECT current_database(), extract(epoch FROM clock_timestamp())::float8"
        ).fetchone()  # type: ignore[misc]
        self.clock_offset = server_now - (before + time.time()) / 2
        existing = self._kind.comment(keeper, self.name)
        if existing is not None:
            found = parse_record(existing[0], self.kind, self.name)
            if found is None:
                raise NamespaceNotOursError(
                    f'worker_postgres: {self.kind} "{self.name}" exists and was not created by '
                    f"worker_utils; drop it yourself or set worker_utils_postgres_prefix to "
                    f"another prefix"
                )
            # Our own lock above covers a lock kept here; one kept in the namespace is its own.
            with owner_lock(
                self.url, keeper, current_db, found, self.application_name, self.slot_wait
            ) as held:
                if held is not None:
                    raise PostgresError(
                        f'worker_postgres: {self.kind} "{self.name}" is in use by a live run '
                        f"with the same run id ({held}); give each concurrent run its own "
                        f"--testrunuid"
                    )
                self._kind.drop(keeper, self.name)
        clone = template if template is not None and template["clonable"] else None
        owner = self._owner = record(self.kind, self.name, current_db, self.run_uid)
        if self.template:
            owner["template"] = True
        self._lockdb = current_db
        self._kind.create(self, keeper, owner, clone)
        admin = self._require_admin()
        if owner.get("lockdb") == self.name:
            # The lock lives in the namespace now, held by the admin connection: keep that one.
            self._keeper, self._lockdb = admin, self.name
            keeper.close()
        admin.execute(sql.SQL("SET lock_timeout = {}").format(sql.Literal(_LOCK_TIMEOUT)))
        # Resets need no durability (a crash loses the namespace anyway), and not
        # waiting for the WAL flush saves a good part of each one. Others see a
        # commit at once either way.
        admin.execute("SET synchronous_commit = off")

    def scratch_database(self, suffix: str, *, create: bool = True) -> str:
        """Return the URL of a database of this worker's own, ``<namespace name>_<suffix>``.

        The name is listed in the namespace's ownership record, so the database
        is dropped with the namespace, by :meth:`drop` or by the reaper. With
        ``create`` it is made now (empty, with an ownership record of its own;
        a leftover of the same name is dropped first); without, the code under
        test creates it.

        Raises:
            ValueError: ``suffix`` is not a lower-case identifier, or makes the
                name longer than 63 bytes.
            NamespaceNotOursError: A database of that name exists and is not ours.
        """
        sql = psycopg_module().sql
        name = scratch_name(self.name, suffix)
        keeper = self._require_keeper()
        if name not in self.scratch:
            self.scratch.append(name)
            self._owner["scratch"] = self.scratch
            keeper.execute(
                sql.SQL("COMMENT ON {} {} IS {}").format(
                    sql.SQL(self._kind.keyword),
                    sql.Identifier(self.name),
                    sql.Literal(json.dumps(self._owner)),
                )
            )
        if create:
            keeper.execute("SELECT pg_advisory_lock(%s)", [lock_key("database", name)])
            if drop_scratch(keeper, [name]) == [None]:
                raise NamespaceNotOursError(
                    f'worker_postgres_scratch_database: database "{name}" exists and was not '
                    f"created by worker_utils; drop it yourself or pass another suffix"
                )
            owner = record("database", name, self._owner["database"], self.run_uid)
            owner["lockdb"] = self._lockdb  # where the keeper holds the lock it just took
            keeper.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            keeper.execute(
                sql.SQL("COMMENT ON DATABASE {} IS {}").format(
                    sql.Identifier(name), sql.Literal(json.dumps(owner))
                )
            )
        return worker_url(
            self.url, name, "database", application_name=name, lock_timeout=self.lock_timeout
        )

    def server_use(self) -> ServerUse:
        """How the server's connection slots are used now, read through the namespace's own
        connection: open already, it is no slot to ask a full server for."""
        return read_server_use(self._require_keeper())

    def _require_keeper(self) -> psycopg.Connection[Any]:
        if self._keeper is None:
            raise PostgresError(f"worker_postgres: {self.kind} {self.name!r} was not created")
        return self._keeper

    def connect(self, **kwargs: Any) -> psycopg.Connection[Any]:
        """Open a new psycopg connection that lands in this namespace."""
        return connect(self.dsn, wait=self.slot_wait, **kwargs)

    def snapshot(self) -> None:
        """Take the rows the namespace holds now (the setup's) as what resets return to.

        After it, a ``delete`` or ``truncate`` reset leaves a table holding such
        rows alone if no test changed it, and otherwise refills it with them;
        sequences go back to where they are now. Without it, resets empty every
        table.
        """
        self._reset_state().snapshot(self._require_admin())

    def reset(self, mode: str) -> list[EndedBackend]:
        """Undo what tests stored in the namespace.

        ``delete`` empties the tables that hold rows and sets their sequences
        back; ``truncate`` truncates every table; both then refill the tables
        that held rows at :meth:`snapshot`. ``transaction`` and ``none`` do
        nothing here (the test connection's rollback undoes a ``transaction`` test).

        Returns:
            The connections that held a lock the reset needed (left open in a
            transaction by a test), which it ended.

        Raises:
            PostgresError: The namespace could not be brought back (a row outside
                it refers to a row inside, say); the message has the server's words.
        """
        if mode not in ("delete", "truncate"):
            return []
        psycopg = psycopg_module()
        admin = self._require_admin()
        resetter = self._reset_state()
        ended: list[EndedBackend] = []
        try:
            try:
                resetter.reset(admin, mode)
            except psycopg.errors.LockNotAvailable:
                # A connection the test left idle in a transaction holds a lock.
                for pid, app, began in self._kind.terminate_lockers(
                    admin, self.name, sorted(self.own_pids)
                ):
                    local = None if began is None else began - self.clock_offset
                    ended.append(EndedBackend(pid, app, local))
                resetter.reset(admin, mode)
        except ResetError as exc:
            raise PostgresError(
                f"worker_postgres: the {mode} reset of {self.kind} {self.name!r} failed: {exc}"
            ) from exc
        self.sequences_advanced = False
        return ended

    def wal_position(self) -> str | None:
        """Where the server's write-ahead log is: it moves when anything on the server writes.

        None where the server does not say (a standby, or a role without the right).
        """
        import psycopg

        try:
            row = (
                self._require_admin().execute("SELECT pg_current_wal_insert_lsn()::text").fetchone()
            )
        except psycopg.Error:
            return None
        return None if row is None else str(row[0])

    def prepare(self) -> None:
        """Read the reset plan now: extensions found later are reported as the tests'."""
        self._reset_state().prepare(self._require_admin())

    def lock_holders(self) -> list[tuple[int, float | None]]:
        """Connections idle in a transaction that hold locks in the namespace.

        Each as its pid and when its transaction began (local clock), oldest
        first: what a connection that ran out of ``lock_timeout`` waited for.
        """
        psycopg = psycopg_module()
        try:
            rows = (
                self._require_admin()
                .execute(
                    sql_holders(self._kind.lockers_sql),
                    {"name": self.name, "own": []},
                )
                .fetchall()
            )
        except psycopg.Error as exc:
            raise PostgresError(f"worker_postgres: {first_line(exc)}") from None
        return [
            (pid, None if began is None else began - self.clock_offset) for pid, _, began in rows
        ]

    def extensions_created(self) -> list[str]:
        """Extensions in the namespace's schemas other than :attr:`extensions`, as of the last
        read of its reset plan (a reset after the namespace changed reads it)."""
        return [name for name in self._reset_state().extensions if name not in self.extensions]

    def template_facts(self) -> tuple[str | None, bool]:
        """For a template: why it cannot be copied (None if it can), and whether it holds rows."""
        return self._kind.template_facts(self)

    def _reset_state(self) -> Resetter:
        if self._resetter is None:
            self._resetter = self._kind.resetter(self.name)
        return self._resetter

    def _require_admin(self) -> psycopg.Connection[Any]:
        if self._admin is None and self.borrowed:
            dbname = self._kind.dbname(self.name)
            self._admin = connect(
                namespace_dsn(self.url, dbname=dbname, application_name=self.name),
                autocommit=True,
            )
        if self._admin is None:
            raise PostgresError(f"worker_postgres: {self.kind} {self.name!r} was not created")
        return self._admin

    def drop(self, *, keep: bool = False) -> None:
        """Drop the namespace and release its lock; never waits on a leaked connection.

        Args:
            keep: Release the lock and connections but leave the namespace (a
                template, dropped at the end of the run).
        """
        keeper = self._keeper
        if keeper is None:
            if self._admin is not None:  # borrowed: opened here for a query, nothing else
                self._admin.close()
                self._admin = None
            return
        outside: psycopg.Connection[Any] | None = None
        try:
            if self._admin is not None and self._admin is not keeper:
                self._admin.close()
            # Only what this object created: never a name it found taken.
            if self._created and not keep and not keeper.closed:
                conn = keeper
                if self._lockdb == self.name:
                    # No database is dropped from inside it: a connection outside, for a moment.
                    conn = outside = self._connect(self.url)
                drop_scratch(conn, self.scratch)
                if outside is not None:
                    keeper.close()  # releases the lock: what holds it is gone in a moment
                self._kind.drop(conn, self.name)
            elif self._created and not keeper.closed:
                self._kind.release(keeper, self.name)
        finally:
            self._admin = self._keeper = None
            self._resetter = None
            self._created = False
            keeper.close()  # releases the advisory lock
            if outside is not None:
                outside.close()


def drop_scratch(conn: psycopg.Connection[Any], names: Sequence[str]) -> list[str | None]:
    """Drop the scratch databases ``names`` of a namespace; for each, what was found.

    A database is dropped if it has no comment (the code under test made it)
    or a worker_utils record naming it; one with another comment is left, and
    reported as None. Others are reported by name (also when already gone).
    """
    sql = psycopg_module().sql
    found: list[str | None] = []
    for name in names:
        row = _KINDS["database"].comment(conn, name)
        if (
            row is not None
            and row[0] is not None
            and parse_record(row[0], "database", name) is None
        ):
            found.append(None)
            continue
        if row is not None:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
        found.append(name)
    return found


def create_extensions(
    target: str | psycopg.Connection[Any],
    names: Sequence[str],
    schema: str = "public",
    *,
    slot_wait: float = 0.0,
    application_name: str | None = None,
) -> list[str]:
    """Create ``names`` in ``schema`` of a database unless they exist; return the names.

    Extensions are per database, not per schema: in schema mode they are made
    once per run where every worker's search path reaches them, and left in
    place after the run; in database mode, in each worker's database.

    Args:
        target: A URL, or an autocommit connection to the database.
        slot_wait: Seconds a connection to ``target`` waits for a free slot.
        application_name: Of a connection to ``target``.
    """
    psycopg = psycopg_module()
    sql = psycopg.sql
    conn = (
        connect(target, autocommit=True, wait=slot_wait, application_name=application_name)
        if isinstance(target, str)
        else target
    )
    try:
        for name in names:
            try:
                conn.execute(
                    sql.SQL("CREATE EXTENSION IF NOT EXISTS {} SCHEMA {}").format(
                        sql.Identifier(name), sql.Identifier(schema)
                    )
                )
            except (psycopg.errors.UniqueViolation, psycopg.errors.DuplicateObject):
                pass  # another run created it at the same moment: IF NOT EXISTS is not atomic
            except psycopg.errors.InvalidSchemaName:
                raise PostgresError(
                    f"worker_utils_postgres_extension_schema: schema {schema!r} does not exist; "
                    f"create it (CREATE SCHEMA {schema}) or leave the setting at public"
                ) from None
            except psycopg.Error as exc:
                raise PostgresError(
                    f"worker_utils_postgres_extensions: cannot create extension {name!r} "
                    f"({first_line(exc)}); install it on the server or remove it from the setting"
                ) from None
    finally:
        if conn is not target:
            conn.close()
    return list(names)


@contextlib.contextmanager
def owner_lock(
    url: str,
    conn: psycopg.Connection[Any],
    current_db: str,
    owner: Mapping[str, Any],
    application_name: str | None = None,
    wait: float = 0.0,
) -> Iterator[str | None]:
    """Take the advisory lock of the namespace of record ``owner`` for the block, if it is free.

    Yields None when it was, else why the namespace must be left alone. The
    lock is tried where its owner holds it: in ``conn``'s database, or through
    a connection of its own to the record's ``lockdb``. A lock kept in the
    namespace's own database (a worker's database) is released before the
    block, since dropping that database ends every connection to it; one whose
    database is gone is free, one whose database cannot be reached is not.

    Args:
        url: The server, for a connection to another database.
        conn: An autocommit connection to ``current_db``.
        application_name: Of a connection to another database.
        wait: Seconds a connection to another database waits for a free slot.
    """
    psycopg = psycopg_module()
    key = owner["lock"]
    lock_db = kind_of(owner["kind"]).lock_database(owner, current_db)
    if lock_db == current_db:
        lock_conn = conn
    else:
        try:
            lock_conn = connect(
                namespace_dsn(url, dbname=lock_db),
                autocommit=True,
                wait=wait,
                application_name=application_name,
            )
        except psycopg.OperationalError as exc:
            if f'database "{lock_db}" does not exist' in str(exc):
                yield None  # dropped since its record was read: nothing holds its lock
            else:
                yield f"its lock cannot be checked in database {lock_db!r}: {first_line(exc)}"
            return
    try:
        row = lock_conn.execute("SELECT pg_try_advisory_lock(%s)", [key]).fetchone()
    except BaseException:
        if lock_conn is not conn:
            lock_conn.close()
        raise
    held = None if row and row[0] else "its owner holds its lock"
    if held is not None or lock_db == owner["name"]:
        if lock_conn is not conn:
            lock_conn.close()  # before the block: a drop of the database would end it
        yield held
        return
    try:
        yield None
    finally:
        lock_conn.execute("SELECT pg_advisory_unlock(%s)", [key])
        if lock_conn is not conn:
            lock_conn.close()
