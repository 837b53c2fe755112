"""Per-worker PostgreSQL namespaces: names, ownership records, creation, reset, reaping, preflight.

A worker gets a schema (or, in database mode, a database) named
``<prefix>_<run tag>_<worker id>``: unique per worker and per run, so
concurrent runs and CI shards can share one server. Every namespace made here
carries an ownership record (a JSON comment on the schema or database) and its
owner holds a session advisory lock for as long as it lives: a namespace whose
record is ours and whose lock is free belongs to a dead worker and may be
dropped. Nothing without such a record is ever dropped, truncated or emptied.

psycopg is imported inside the functions that need it, so ``import
worker_utils`` works without it.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import os
import re
import select
import socket
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from worker_utils._util import mask_password
from worker_utils._worker import get_worker_id
from worker_utils.errors import WorkerUtilsError
from worker_utils.postgres._reset import ResetError, Resetter

if TYPE_CHECKING:
    import psycopg

__all__ = [
    "DEFAULT_PREFIX",
    "RESET_MODES",
    "URL_VAR",
    "NamespaceNotOursError",
    "PostgresError",
    "ReapResult",
    "WorkerNamespace",
    "get_worker_postgres_schema",
    "namespace_dsn",
    "preflight",
    "reap",
    "worker_postgres_name",
]

#: The environment variable naming the server to use.
URL_VAR = "WORKER_UTILS_POSTGRES_URL"
DEFAULT_PREFIX = "test_worker"
#: How a test's changes are undone: see :meth:`WorkerNamespace.reset`.
RESET_MODES = ("transaction", "delete", "truncate", "none")
KINDS = ("schema", "database")
#: Connections one worker may open: its keeper, its test connection, and the
#: application's own (a pool or two).
CONNECTIONS_PER_WORKER = 4

_PREFIX = re.compile(r"[a-z_][a-z0-9_]*")
_NAME_MAX = 63
_TAG_LEN = 10
_WORKER_MAX = len("gw999999")
_PREFIX_MAX = _NAME_MAX - 1 - _TAG_LEN - 1 - _WORKER_MAX
_RECORD_KEY = "worker_utils"
_RECORD_PATTERN = '{"worker_utils":%'
_LOCK_TIMEOUT = "2s"
_CONNECTION_OK = 0  # libpq's CONNECTION_OK, psycopg.pq.ConnStatus.OK
_EXTRA = "pytest-worker-utils[postgres]"


class PostgresError(WorkerUtilsError, RuntimeError):
    """A PostgreSQL setting, server or namespace is not usable; the message says what to do."""


class NamespaceNotOursError(PostgresError):
    """A namespace with the name worker_utils needs exists and has no worker_utils record."""


def _psycopg() -> Any:
    try:
        import psycopg
    except ImportError:
        raise PostgresError(
            f"worker_postgres: psycopg is not installed; pip install '{_EXTRA}'"
        ) from None
    return psycopg


def get_worker_postgres_schema(
    prefix: str = DEFAULT_PREFIX, env: Mapping[str, str] | None = None
) -> str:
    """Return ``<prefix>_<worker id>``, e.g. ``"test_worker_gw0"`` or ``"test_worker_master"``.

    The classic deterministic name, the same in every run: two concurrent runs
    against one server get the same name. The ``worker_postgres_schema`` fixture
    inserts a tag of the run id (:func:`worker_postgres_name`) to make names
    unique across runs.

    Raises:
        ValueError: ``prefix`` is not a lower-case identifier, starts with
            ``pg_``, or makes the name longer than 63 bytes.
    """
    _check_prefix(prefix, "get_worker_postgres_schema", _NAME_MAX - 1 - _WORKER_MAX)
    name = f"{prefix}_{get_worker_id(env)}"
    if len(name) > _NAME_MAX:
        raise ValueError(
            f"get_worker_postgres_schema: {name!r} is longer than PostgreSQL's "
            f"{_NAME_MAX}-byte limit; use a shorter prefix"
        )
    return name


def _check_prefix(prefix: str, setting: str, longest: int) -> None:
    if not _PREFIX.fullmatch(prefix) or prefix.startswith("pg_"):
        raise ValueError(
            f"{setting}: prefix {prefix!r} must be a lower-case identifier "
            f"(letters, digits, '_') that does not start with 'pg_'"
        )
    if len(prefix) > longest:
        raise ValueError(
            f"{setting}: prefix {prefix!r} is {len(prefix)} bytes; use at most {longest} "
            f"so that names fit PostgreSQL's {_NAME_MAX}-byte limit"
        )


def run_tag(run_uid: str) -> str:
    """Return the 10 lower-case hex digits of ``run_uid`` used in namespace names.

    xdist's run ids are hex already and keep their first digits, so a name can
    be matched with its run directory; any other id is hashed.
    """
    lowered = run_uid.lower()
    if re.fullmatch(r"[0-9a-f]{10,}", lowered):
        return lowered[:_TAG_LEN]
    return hashlib.sha256(run_uid.encode()).hexdigest()[:_TAG_LEN]


def worker_postgres_name(
    run_uid: str, worker_id: str | None = None, prefix: str = DEFAULT_PREFIX
) -> str:
    """Return ``<prefix>_<run tag>_<worker id>``, the schema or database of one worker in one run.

    ``get_worker_postgres_schema(prefix)`` is the same name without the run tag.

    Args:
        run_uid: The run id (:func:`worker_utils.get_testrun_uid`).
        worker_id: ``gw0``, ``gw1``, ... or ``master``; this process's by default.
        prefix: A lower-case identifier of at most 43 bytes, not starting with ``pg_``.

    Raises:
        ValueError: A bad prefix.
    """
    _check_prefix(prefix, "worker_utils_postgres_prefix", _PREFIX_MAX)
    return f"{prefix}_{run_tag(run_uid)}_{worker_id or get_worker_id()}"


def _lock_key(kind: str, name: str) -> int:
    digest = hashlib.sha256(f"worker_utils:{kind}:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _record(kind: str, name: str, database: str, run_uid: str) -> dict[str, Any]:
    return {
        _RECORD_KEY: 1,
        "kind": kind,
        "name": name,
        "database": database,
        "run": run_uid,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "lock": _lock_key(kind, name),
    }


def _parse_record(text: str | None, kind: str, name: str) -> dict[str, Any] | None:
    """Return the ownership record in a comment, or None if the comment is not ours."""
    if not text or not text.startswith('{"worker_utils"'):
        return None
    try:
        record = json.loads(text)
    except ValueError:
        return None
    if (
        not isinstance(record, dict)
        or record.get(_RECORD_KEY) != 1
        or record.get("kind") != kind
        or record.get("name") != name
        or not isinstance(record.get("lock"), int)
    ):
        return None
    return record


redact = mask_password


def namespace_dsn(
    url: str,
    *,
    dbname: str | None = None,
    search_path: Sequence[str] = (),
    application_name: str | None = None,
) -> str:
    """Return a libpq connection string for ``url`` that lands in a given database and schema.

    The search path travels as ``options=-csearch_path=...``, so every client
    that opens its own connection with this string (an ORM, a pool, a
    subprocess) is isolated too; options already in ``url`` are kept.
    """
    conninfo = _psycopg().conninfo
    params: dict[str, Any] = {}
    if dbname is not None:
        params["dbname"] = dbname
    if application_name is not None:
        params["application_name"] = application_name
    if search_path:
        existing = conninfo.conninfo_to_dict(url).get("options") or ""
        # Names are validated identifiers: no spaces, commas or quotes to escape.
        params["options"] = f"{existing} -csearch_path={','.join(search_path)}".strip()
    return str(conninfo.make_conninfo(url, **params))


def _connect(url: str, **kwargs: Any) -> psycopg.Connection[Any]:
    conn: psycopg.Connection[Any] = _psycopg().Connection.connect(url, connect_timeout=10, **kwargs)
    return conn


def _terminate_lockers(conn: psycopg.Connection[Any], kind: str, name: str) -> None:
    """End other backends that use the namespace, so that dropping it cannot wait forever."""
    if kind == "database":
        with contextlib.suppress(_psycopg().Error):
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                [name],
            )
        return
    with contextlib.suppress(_psycopg().Error):
        conn.execute(
            """
            SELECT pg_terminate_backend(pid) FROM (
                SELECT a.pid FROM pg_stat_activity a
                WHERE a.application_name = %(name)s AND a.pid <> pg_backend_pid()
                UNION
                SELECT l.pid FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
                WHERE c.relnamespace = to_regnamespace(%(name)s) AND l.pid <> pg_backend_pid()
            ) AS lockers
            """,
            {"name": name},
        )


def _drop(conn: psycopg.Connection[Any], kind: str, name: str) -> None:
    """Drop a namespace, ending whatever holds locks on it rather than waiting for it."""
    psycopg = _psycopg()
    sql = psycopg.sql
    if kind == "database":
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        return
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
            _terminate_lockers(conn, kind, name)


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
    """

    url: str
    name: str
    run_uid: str
    kind: str = "schema"
    extension_schema: str = "public"
    #: Database mode: extensions to create in each new database (they are per database).
    extensions: Sequence[str] = ()
    _keeper: psycopg.Connection[Any] | None = field(default=None, repr=False)
    _admin: psycopg.Connection[Any] | None = field(default=None, repr=False)
    _resetter: Resetter | None = field(default=None, repr=False)
    #: Set when a test may have moved sequences on without leaving rows (a
    #: rolled-back transaction); the next ``delete`` test resets before it starts.
    sequences_advanced: bool = field(default=False, repr=False)
    #: Set by :meth:`create` when the copy of its template holds rows.
    seeded: bool = field(default=False, repr=False)
    _created: bool = field(default=False, repr=False)

    @property
    def search_path(self) -> tuple[str, ...]:
        """The schemas a connection to this namespace looks in, first to last."""
        if self.kind == "database":
            return ()
        if self.extension_schema and self.extension_schema != self.name:
            return (self.name, self.extension_schema)
        return (self.name,)

    @property
    def schema(self) -> str:
        """The schema tables land in: the worker's own, or ``public`` of its own database."""
        return self.name if self.kind == "schema" else "public"

    @property
    def dsn(self) -> str:
        """A connection string whose connections land in this namespace."""
        return namespace_dsn(
            self.url,
            dbname=self.name if self.kind == "database" else None,
            search_path=self.search_path,
            application_name=self.name,
        )

    @property
    def database(self) -> str:
        """The database the namespace's tables live in."""
        if self.kind == "database":
            return self.name
        return str(_psycopg().conninfo.conninfo_to_dict(self.url).get("dbname") or "")

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
        sql = _psycopg().sql
        keeper = self._keeper = _connect(self.url, autocommit=True)
        key = _lock_key(self.kind, self.name)
        if not keeper.execute("SELECT pg_try_advisory_lock(%s)", [key]).fetchone()[0]:  # type: ignore[index]
            raise PostgresError(
                f'worker_postgres: {self.kind} "{self.name}" is in use by a live run with the '
                f"same run id; give each concurrent run its own --testrunuid"
            )
        if template is not None:
            keeper.execute(
                "SELECT pg_advisory_lock_shared(%s)", [_lock_key(self.kind, template["name"])]
            )
        clone = template is not None and template["clonable"]
        current_db = keeper.execute("SELECT current_database()").fetchone()[0]  # type: ignore[index]
        existing = self._comment(keeper)
        if existing is not None:
            if _parse_record(existing[0], self.kind, self.name) is None:
                raise NamespaceNotOursError(
                    f'worker_postgres: {self.kind} "{self.name}" exists and was not created by '
                    f"worker_utils; drop it yourself or set worker_utils_postgres_prefix to "
                    f"another prefix"
                )
            _drop(keeper, self.kind, self.name)
        record = _record(self.kind, self.name, current_db, self.run_uid)
        ident = sql.Identifier(self.name)
        if self.kind == "schema":
            with keeper.transaction():
                keeper.execute(sql.SQL("CREATE SCHEMA {}").format(ident))
                self._created = True
                keeper.execute(
                    sql.SQL("COMMENT ON SCHEMA {} IS {}").format(
                        ident, sql.Literal(json.dumps(record))
                    )
                )
                if clone:
                    assert template is not None
                    self.seeded = _clone_schema(
                        keeper, template["name"], self.name, self.extension_schema
                    )
            self._admin = keeper
        else:
            record["lockdb"] = current_db
            create = sql.SQL("CREATE DATABASE {}").format(ident)
            if clone:
                assert template is not None
                create += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template["name"]))
                self.seeded = bool(template["seeded"])
            keeper.execute(create)
            self._created = True
            keeper.execute(
                sql.SQL("COMMENT ON DATABASE {} IS {}").format(
                    ident, sql.Literal(json.dumps(record))
                )
            )
            self._admin = _connect(
                namespace_dsn(self.url, dbname=self.name, application_name=self.name),
                autocommit=True,
            )
            if self.extensions and not clone:  # a copy has its template's extensions
                create_extensions(self._admin, self.extensions, self.extension_schema)
        self._admin.execute(sql.SQL("SET lock_timeout = {}").format(sql.Literal(_LOCK_TIMEOUT)))
        # Resets need no durability (a crash loses the namespace anyway), and not
        # waiting for the WAL flush saves a good part of each one. Others see a
        # commit at once either way.
        self._admin.execute("SET synchronous_commit = off")

    def _comment(self, conn: psycopg.Connection[Any]) -> tuple[str | None] | None:
        if self.kind == "schema":
            query = (
                "SELECT obj_description(oid, 'pg_namespace') FROM pg_namespace WHERE nspname = %s"
            )
        else:
            query = (
                "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s"
            )
        row: tuple[str | None] | None = conn.execute(query, [self.name]).fetchone()
        return row

    def connect(self, **kwargs: Any) -> psycopg.Connection[Any]:
        """Open a new psycopg connection that lands in this namespace."""
        return _connect(self.dsn, **kwargs)

    def snapshot(self) -> None:
        """Take the rows the namespace holds now (the setup's) as what resets return to.

        After it, a ``delete`` or ``truncate`` reset leaves a table holding such
        rows alone if no test changed it, and otherwise refills it with them;
        sequences go back to where they are now. Without it, resets empty every
        table.
        """
        self._reset_state().snapshot(self._require_admin())

    def reset(self, mode: str) -> None:
        """Undo what tests stored in the namespace.

        ``delete`` empties the tables that hold rows and sets their sequences
        back; ``truncate`` truncates every table; both then refill the tables
        that held rows at :meth:`snapshot`. ``transaction`` and ``none`` do
        nothing here (the test connection's rollback undoes a ``transaction`` test).

        Raises:
            PostgresError: The namespace could not be brought back (a row outside
                it refers to a row inside, say); the message has the server's words.
        """
        if mode not in ("delete", "truncate"):
            return
        psycopg = _psycopg()
        admin = self._require_admin()
        resetter = self._reset_state()
        try:
            try:
                resetter.reset(admin, mode)
            except psycopg.errors.LockNotAvailable:
                # A connection the test left idle in a transaction holds a lock.
                _terminate_lockers(admin, self.kind, self.name)
                resetter.reset(admin, mode)
        except ResetError as exc:
            raise PostgresError(
                f"worker_postgres: the {mode} reset of {self.kind} {self.name!r} failed: {exc}"
            ) from exc
        self.sequences_advanced = False

    def _reset_state(self) -> Resetter:
        if self._resetter is None:
            if self.kind == "schema":
                schema = self.schema
                self._resetter = Resetter(lambda _: [schema], database=False)
            else:
                self._resetter = Resetter(self._user_schemas, database=True)
        return self._resetter

    def _user_schemas(self, conn: psycopg.Connection[Any]) -> list[str]:
        rows = conn.execute(
            "SELECT nspname FROM pg_namespace WHERE nspname !~ '^pg_' "
            "AND nspname <> 'information_schema'"
        ).fetchall()
        return [row[0] for row in rows]

    def _require_admin(self) -> psycopg.Connection[Any]:
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
            return
        try:
            if self._admin is not None and self._admin is not keeper:
                self._admin.close()
            # Only what this object created: never a name it found taken.
            if self._created and not keep and not keeper.closed:
                _drop(keeper, self.kind, self.name)
        finally:
            self._admin = self._keeper = None
            self._resetter = None
            self._created = False
            keeper.close()  # releases the advisory lock


# What a template schema holds that _clone_schema cannot copy (it copies tables,
# their sequences, indexes and constraints, and views); the first few are named.
# Membership comes from pg_depend's index on the namespace: pg_class has none.
_UNCLONABLE = """
WITH member AS (
    SELECT classid, objid FROM pg_depend
    WHERE refclassid = 'pg_namespace'::regclass AND refobjid = %(s)s::regnamespace
      AND deptype = 'n'
), rel AS (
    SELECT c.oid, c.relname, c.relkind FROM member m JOIN pg_class c ON c.oid = m.objid
    WHERE m.classid = 'pg_class'::regclass
)
SELECT what FROM (
    SELECT 'relation ' || relname AS what FROM rel WHERE relkind NOT IN ('r', 'S', 'v')
    UNION ALL
    SELECT 'sequence ' || r.relname FROM rel r WHERE r.relkind = 'S' AND NOT EXISTS (
        SELECT FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = r.oid
        AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i'))
    UNION ALL
    SELECT 'trigger ' || g.tgname FROM rel r JOIN pg_trigger g ON g.tgrelid = r.oid
    WHERE NOT g.tgisinternal
    UNION ALL
    SELECT 'policy ' || o.polname FROM rel r JOIN pg_policy o ON o.polrelid = r.oid
    UNION ALL
    SELECT 'inheritance ' || r.relname FROM rel r JOIN pg_inherits i ON i.inhrelid = r.oid
    UNION ALL
    SELECT 'function ' || p.proname FROM member m JOIN pg_proc p ON p.oid = m.objid
    WHERE m.classid = 'pg_proc'::regclass
    UNION ALL
    SELECT 'type ' || t.typname FROM member m JOIN pg_type t ON t.oid = m.objid
    WHERE m.classid = 'pg_type'::regclass AND t.typtype <> 'c'
    UNION ALL  -- extensions, collations, operators, statistics, text search ...
    SELECT pg_describe_object(m.classid, m.objid, 0) FROM member m
    WHERE m.classid NOT IN ('pg_class'::regclass, 'pg_proc'::regclass, 'pg_type'::regclass)
) AS unsupported ORDER BY 1 LIMIT 3
"""


def _unclonable(conn: psycopg.Connection[Any], schema: str) -> str | None:
    """Return why ``schema`` cannot be copied by :func:`_clone_schema`, or None if it can."""
    rows = conn.execute(_UNCLONABLE, {"s": schema}).fetchall()
    if not rows:
        return None
    return "it holds " + ", ".join(row[0] for row in rows)


def _clone_schema(
    conn: psycopg.Connection[Any], source: str, target: str, extension_schema: str
) -> bool:
    """Copy the tables, sequences, indexes, constraints, rows and views of ``source``.

    Returns True if rows were copied.

    Runs inside the caller's transaction. Definitions are read with ``source``
    first on the search path, so that they name its objects unqualified, and
    replayed with ``target`` first, so that those names land in the copy.
    """
    sql = _psycopg().sql
    dst = sql.Identifier(target)

    def search_path(first: str) -> None:
        conn.execute(
            "SELECT set_config('search_path', %s, true)",
            [",".join(f'"{name}"' for name in (first, extension_schema) if name)],
        )

    search_path(source)
    tables = [
        row[0]
        for row in conn.execute(
            "SELECT relname FROM pg_class WHERE relnamespace = %s::regnamespace "
            "AND relkind = 'r' ORDER BY oid",
            [source],
        )
    ]
    sequences = conn.execute(
        """
        SELECT t.relname, a.attname, s.relname, d.deptype = 'i', q.seqtypid::regtype::text,
               q.seqincrement, q.seqmin, q.seqmax, q.seqstart, q.seqcache, q.seqcycle,
               pg_sequence_last_value(s.oid)
        FROM pg_depend d
        JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S'
        JOIN pg_sequence q ON q.seqrelid = s.oid
        JOIN pg_class t ON t.oid = d.refobjid
        JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = d.refobjsubid
        WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass
          AND t.relnamespace = %s::regnamespace AND d.deptype IN ('a', 'i')
        """,
        [source],
    ).fetchall()
    foreign_keys = conn.execute(
        "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE connamespace = %s::regnamespace AND contype = 'f' ORDER BY oid",
        [source],
    ).fetchall()
    views = conn.execute(
        "SELECT relname, pg_get_viewdef(oid) FROM pg_class "
        "WHERE relnamespace = %s::regnamespace AND relkind = 'v' ORDER BY oid",
        [source],
    ).fetchall()
    columns = {
        table: [
            row[0]
            for row in conn.execute(
                "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 "
                "AND NOT attisdropped AND attgenerated = '' ORDER BY attnum",
                [f'"{source}"."{table}"'],
            )
        ]
        for table in tables
    }
    search_path(target)
    for table in tables:
        conn.execute(
            sql.SQL("CREATE TABLE {} (LIKE {} INCLUDING ALL)").format(
                sql.Identifier(target, table), sql.Identifier(source, table)
            )
        )
    for table, column, seq, identity, *params, last_value in sequences:
        if identity:  # LIKE made a new identity sequence: only its position is copied
            new_seq = conn.execute(
                "SELECT pg_get_serial_sequence(%s, %s)", [f'"{target}"."{table}"', column]
            ).fetchone()[0]  # type: ignore[index]
        else:  # a serial: LIKE copied a default that still points at the source's sequence
            type_, increment, minimum, maximum, start, cache, cycle = params
            conn.execute(
                sql.SQL(
                    "CREATE SEQUENCE {} AS {} INCREMENT {} MINVALUE {} MAXVALUE {} START {} "
                    "CACHE {} {} OWNED BY {}"
                ).format(
                    sql.Identifier(target, seq),
                    sql.SQL(type_),  # a regtype's own text: a type name
                    *(sql.Literal(v) for v in (increment, minimum, maximum, start, cache)),
                    sql.SQL("CYCLE" if cycle else "NO CYCLE"),
                    sql.Identifier(target, table, column),
                )
            )
            new_seq = dst.as_string(conn) + "." + sql.Identifier(seq).as_string(conn)
            conn.execute(
                sql.SQL("ALTER TABLE {} ALTER COLUMN {} SET DEFAULT nextval({}::regclass)").format(
                    sql.Identifier(target, table), sql.Identifier(column), sql.Literal(new_seq)
                )
            )
        if last_value is not None:
            conn.execute("SELECT setval(%s::regclass, %s, true)", [new_seq, last_value])
    copied = 0
    for table in tables:
        cols = sql.SQL(", ").join(sql.Identifier(c) for c in columns[table])
        copied += conn.execute(
            sql.SQL("INSERT INTO {} ({}) OVERRIDING SYSTEM VALUE SELECT {} FROM {}").format(
                sql.Identifier(target, table), cols, cols, sql.Identifier(source, table)
            )
        ).rowcount
    for table, name, definition in foreign_keys:
        conn.execute(
            sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {}").format(
                sql.Identifier(target, table.rpartition(".")[2].strip('"')),
                sql.Identifier(name),
                sql.SQL(definition),  # the server's own rendering of the constraint
            )
        )
    for name, definition in views:
        conn.execute(
            sql.SQL("CREATE VIEW {} AS {}").format(
                sql.Identifier(target, name), sql.SQL(definition)
            )
        )
    return copied > 0


def template_name(run_uid: str, prefix: str = DEFAULT_PREFIX) -> str:
    """Return the name of the run's template namespace, ``<prefix>_<run tag>_template``."""
    return worker_postgres_name(run_uid, "template", prefix)


def build_template(
    url: str,
    run_uid: str,
    prefix: str,
    kind: str,
    extension_schema: str,
    setup: Callable[[Any], object],
    extensions: Sequence[str] = (),
) -> dict[str, Any]:
    """Run ``setup`` once for the run, in a template namespace that workers copy.

    Returns:
        JSON data for :meth:`WorkerNamespace.create` and :func:`drop_template`:
        ``clonable`` is False (with a ``reason``) when the template holds objects
        a schema copy cannot reproduce; workers then run the setup themselves.
        ``seeded`` (database mode) is True when the setup left rows.
    """
    template = WorkerNamespace(
        url, template_name(run_uid, prefix), run_uid, kind, extension_schema, extensions
    )
    template.create()
    try:
        with template.connect() as conn:  # committed on leaving the block
            setup(conn)
        reason = None
        seeded = False
        if kind == "schema":  # where the copy itself counts the rows it copies
            reason = _unclonable(template._require_admin(), template.name)
        else:
            seeded = template._reset_state().holds_rows(template._require_admin())
    except BaseException:
        template.drop()
        raise
    template.drop(keep=True)
    return {
        "url": url,
        "name": template.name,
        "kind": kind,
        "clonable": reason is None,
        "reason": reason,
        "seeded": seeded,
    }


def drop_template(value: Mapping[str, Any]) -> None:
    """Drop a template made by :func:`build_template`; the run's controller calls it at the end."""
    with _connect(value["url"], autocommit=True) as conn:
        namespace = WorkerNamespace(value["url"], value["name"], "", value["kind"])
        row = namespace._comment(conn)
        record = _parse_record(row[0] if row else None, value["kind"], value["name"])
        if record is not None:
            _drop_if_unlocked(conn, conn, record, dry_run=False)


@dataclass
class ReapResult:
    """What :func:`reap` dropped (or would drop) and what it kept, with the reason."""

    dropped: list[str] = field(default_factory=list)
    kept: list[tuple[str, str]] = field(default_factory=list)


def _owner_alive(record: Mapping[str, Any]) -> bool:
    from worker_utils.servers._process import pid_alive

    pid = record.get("pid")
    return (
        record.get("host") == socket.gethostname()
        and isinstance(pid, int)
        and pid != os.getpid()
        and pid_alive(pid)
    )


def _records(conn: psycopg.Connection[Any]) -> Iterator[tuple[str, str, str | None]]:
    yield from conn.execute(
        """
        SELECT 'schema', n.nspname, d.description FROM pg_namespace n
        JOIN pg_description d ON d.objoid = n.oid AND d.classoid = 'pg_namespace'::regclass
        WHERE d.description LIKE %(pattern)s
        UNION ALL
        SELECT 'database', db.datname, shobj_description(db.oid, 'pg_database') FROM pg_database db
        WHERE shobj_description(db.oid, 'pg_database') LIKE %(pattern)s
        ORDER BY 2
        """,
        {"pattern": _RECORD_PATTERN},
    )


def reap(
    url: str, *, dry_run: bool = False, log: Callable[[str], object] | None = None
) -> ReapResult:
    """Drop the namespaces worker_utils created on this server whose owners are dead.

    A namespace is dropped only if its comment is a worker_utils ownership
    record naming it, its owner's advisory lock is free (the owning connection
    is gone) and, when the owner ran on this host, its process has exited.
    Schemas are looked for in the database of ``url``; databases server-wide.

    Args:
        url: The server.
        dry_run: Report what would be dropped; drop nothing.
        log: Called with one line per namespace.
    """
    result = ReapResult()
    connections: dict[str, psycopg.Connection[Any]] = {}
    conn = connections[""] = _connect(url, autocommit=True)
    try:
        current_db = conn.execute("SELECT current_database()").fetchone()[0]  # type: ignore[index]
        for kind, name, comment in list(_records(conn)):
            record = _parse_record(comment, kind, name)
            if record is None:
                continue
            reason = _keep_reason(record, current_db)
            lock_db = record.get("lockdb", current_db) if kind == "database" else current_db
            if reason is None:
                lock_conn = connections.get(lock_db)
                if lock_conn is None:
                    lock_conn = connections[lock_db] = _connect(
                        namespace_dsn(url, dbname=lock_db), autocommit=True
                    )
                reason = _drop_if_unlocked(conn, lock_conn, record, dry_run)
            if reason is None:
                result.dropped.append(name)
                if log:
                    log(f"{'would drop' if dry_run else 'dropped'} {kind} {name}")
            else:
                result.kept.append((name, reason))
                if log:
                    log(f"kept {kind} {name}: {reason}")
    finally:
        for each in connections.values():
            each.close()
    return result


def _keep_reason(record: Mapping[str, Any], current_db: str) -> str | None:
    if record["kind"] == "schema" and record.get("database") != current_db:
        return f"its record names database {record.get('database')!r}"
    if _owner_alive(record):
        return f"its owner, process {record['pid']} on this host, is alive"
    return None


def _drop_if_unlocked(
    conn: psycopg.Connection[Any],
    lock_conn: psycopg.Connection[Any],
    record: Mapping[str, Any],
    dry_run: bool,
) -> str | None:
    key = record["lock"]
    if not lock_conn.execute("SELECT pg_try_advisory_lock(%s)", [key]).fetchone()[0]:  # type: ignore[index]
        return "its owner holds its lock"
    try:
        if not dry_run:
            _drop(conn, record["kind"], record["name"])
    finally:
        lock_conn.execute("SELECT pg_advisory_unlock(%s)", [key])
    return None


def preflight(url: str, *, setting: str, kind: str = "schema", workers: int = 1) -> None:
    """Check once, before any test, that the server can give every worker its namespace.

    Raises:
        PostgresError: A bad URL, an unreachable server, a missing privilege or
            too few free connections; the message names the setting to change.
    """
    psycopg = _psycopg()
    try:
        params = psycopg.conninfo.conninfo_to_dict(url)
        for port in str(params.get("port") or "5432").split(","):
            if not (port.isdigit() and 0 < int(port) < 65536):
                raise psycopg.ProgrammingError(f"port {port!r} is not a number from 1 to 65535")
    except psycopg.ProgrammingError as exc:
        raise PostgresError(
            f"{setting}: {redact(url)!r} is not a PostgreSQL URL ({_first_line(exc)}); "
            f"use postgresql://USER@HOST:PORT/DBNAME"
        ) from None
    try:
        conn = _connect(url, autocommit=True)
    except psycopg.OperationalError as exc:
        raise PostgresError(
            f"{setting}: cannot connect to {redact(url)} ({_first_line(exc)}); "
            f"start the server or point {setting} at one that accepts connections"
        ) from None
    with conn:
        row = conn.execute(
            """
            SELECT current_user, current_database(),
                   has_database_privilege(current_database(), 'CREATE'),
                   (SELECT rolcreatedb OR rolsuper FROM pg_roles WHERE rolname = current_user),
                   current_setting('max_connections')::int
                     - current_setting('superuser_reserved_connections')::int,
                   (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')
            """
        ).fetchone()
    assert row is not None
    user, database, can_create_schema, can_create_db, allowed, used = row
    if kind == "schema" and not can_create_schema:
        raise PostgresError(
            f'{setting}: role "{user}" may not create schemas in database "{database}"; '
            f'GRANT CREATE ON DATABASE "{database}" TO "{user}", or point {setting} at a '
            f"database where it may"
        )
    if kind == "database" and not can_create_db:
        raise PostgresError(
            f'{setting}: role "{user}" may not create databases; ALTER ROLE "{user}" CREATEDB, '
            f"or set worker_utils_postgres_mode = schema"
        )
    needed = workers * CONNECTIONS_PER_WORKER
    if allowed - used < needed:
        raise PostgresError(
            f"{setting}: the server accepts {allowed - used} more connections "
            f"(max_connections minus reserved: {allowed}, in use: {used}) and {workers} "
            f"worker(s) need about {needed}; raise max_connections in postgresql.conf "
            f"or run fewer workers (-n)"
        )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0].strip() if text else type(exc).__name__


def create_extensions(
    target: str | psycopg.Connection[Any], names: Sequence[str], schema: str = "public"
) -> list[str]:
    """Create ``names`` in ``schema`` of a database unless they exist; return the names.

    Extensions are per database, not per schema: in schema mode they are made
    once per run where every worker's search path reaches them, and left in
    place after the run; in database mode, in each worker's database.

    Args:
        target: A URL, or an autocommit connection to the database.
    """
    psycopg = _psycopg()
    sql = psycopg.sql
    conn = _connect(target, autocommit=True) if isinstance(target, str) else target
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
                    f"({_first_line(exc)}); install it on the server or remove it from the setting"
                ) from None
    finally:
        if conn is not target:
            conn.close()
    return list(names)


class SharedConnection:
    """The psycopg connection one worker's tests share, begun and ended around each test.

    Reusing one connection saves a connect (several milliseconds) per test. In
    a transaction-mode test it is inside ``BEGIN`` ... ``ROLLBACK`` sent straight
    through libpq: ``Connection.rollback()`` would also empty psycopg's
    prepared-statement cache, which costs about 0.4 ms in the next test. The
    ``ROLLBACK`` of one test and the ``BEGIN`` of the next are sent together as
    the test ends; their results are read as the next test begins, so no test
    waits for that round trip.
    """

    def __init__(self, namespace: WorkerNamespace) -> None:
        self.namespace = namespace
        self._conn: psycopg.Connection[Any] | None = None
        self._begun = False  # a BEGIN sent ahead, with the previous test's ROLLBACK
        self._pending = False  # ... whose results are still to be read
        self._committed = False

    def _open(self) -> psycopg.Connection[Any]:
        conn = self.namespace.connect()
        commit = conn.commit

        def tracked_commit() -> None:
            self._committed = True
            commit()

        conn.commit = tracked_commit  # type: ignore[method-assign]
        self._begun = False
        return conn

    def begin(self, *, transaction: bool) -> psycopg.Connection[Any]:
        """Return the connection, inside a transaction if ``transaction``."""
        psycopg = _psycopg()
        conn = self._conn
        if conn is not None and self._pending:
            self._pending = False
            self._begun = self._collect(conn) and self._begun
        if conn is None or conn.closed or conn.broken or conn.pgconn.status != _CONNECTION_OK:
            self.close()
            conn = self._conn = self._open()
        self._committed = False
        # The pgconn's own status: conn.info builds a new object at every call.
        in_transaction = conn.pgconn.transaction_status == psycopg.pq.TransactionStatus.INTRANS
        if transaction:
            if not (self._begun and in_transaction) and not self._raw(conn, b"BEGIN"):
                conn.execute("BEGIN")
        elif self._begun and in_transaction:
            self._raw(conn, b"ROLLBACK")
        self._begun = False
        return conn

    def end(self, *, transaction: bool) -> bool:
        """Roll back what the test left open; return True if its writes may have been committed."""
        psycopg = _psycopg()
        status = psycopg.pq.TransactionStatus
        conn = self._conn
        if conn is None or conn.closed or conn.broken:
            self.close()
            return transaction  # closed by the test: a commit cannot be ruled out
        escaped = transaction and self._committed
        if conn.pgconn.transaction_status == status.ACTIVE:
            conn.cancel_safe()  # a query still running: stop it rather than wait
        if conn.pgconn.transaction_status in (status.INTRANS, status.INERROR):
            if transaction and not conn.autocommit:
                # Its results are read when the next test begins: by then the
                # server is long done, and this test does not wait a round trip.
                self._begun = self._pending = self._send(conn, b"ROLLBACK; BEGIN")
            if not self._begun:
                conn.rollback()
        elif transaction:
            escaped = True  # the test committed (or rolled back) the outer transaction
        if conn.autocommit:
            conn.autocommit = False
            escaped = escaped or transaction
        return escaped

    @staticmethod
    def _send(conn: psycopg.Connection[Any], command: bytes) -> bool:
        pgconn = conn.pgconn
        try:
            pgconn.send_query(command)
            while pgconn.flush():  # a non-blocking connection: wait until all is sent
                select.select([], [pgconn.socket], [])
        except _psycopg().OperationalError:
            return False
        return True

    @staticmethod
    def _collect(conn: psycopg.Connection[Any]) -> bool:
        """Read the results of what :meth:`_send` sent; True if every command succeeded."""
        ok = True
        try:
            while (result := conn.pgconn.get_result()) is not None:
                ok = ok and result.status == _psycopg().pq.ExecStatus.COMMAND_OK
        except _psycopg().OperationalError:
            return False
        return ok

    @staticmethod
    def _raw(conn: psycopg.Connection[Any], command: bytes) -> bool:
        result = conn.pgconn.exec_(command)
        return bool(result.status == _psycopg().pq.ExecStatus.COMMAND_OK)

    def close(self) -> None:
        """Close the connection, if open."""
        self._pending = self._begun = False
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class AsyncConnector:
    """Opens psycopg ``AsyncConnection``\\ s in a worker's namespace, inside the test's event loop.

    ``async with connector() as conn:`` yields a connection; in a
    transaction-mode test it is inside ``BEGIN`` and everything it did is rolled
    back when the block ends.
    """

    def __init__(self, namespace: WorkerNamespace, *, transaction: bool) -> None:
        self.namespace = namespace
        self.transaction = transaction
        #: True once a block may have committed (a transaction-mode test that committed).
        self.leaked = False

    @contextlib.asynccontextmanager
    async def __call__(self, **kwargs: Any) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """Open a connection for the ``async with`` block; ``kwargs`` go to ``connect``."""
        psycopg = _psycopg()
        conn = await psycopg.AsyncConnection.connect(self.namespace.dsn, **kwargs)
        try:
            if self.transaction:
                # Begun here, so that the code under test's transaction() is a savepoint.
                await conn.execute("SELECT 'worker_utils: begin'")
            yield conn
        finally:
            idle = conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
            if self.transaction and (idle or conn.autocommit):
                self.leaked = True
            await conn.close()  # the server rolls back what was not committed
