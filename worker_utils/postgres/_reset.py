"""The ``delete`` and ``truncate`` resets of a worker's namespace, from a plan kept on the client.

Reading the catalogs costs more than emptying a few tables (pg_class has no
index on the namespace, and on a server without autovacuum it fills with dead
rows), so the tables, their sequences and a fingerprint of the namespace are
read once. A ``delete`` reset is then one prepared statement: data-modifying
CTEs empty every table at once (foreign keys are checked at the end of the
statement, so neither order nor cycles matter), sequences that moved are set
back, and the fingerprint comes back with the result. A fingerprint that
changed (a test created or dropped a table) or an error from a stale plan (a
table renamed, a foreign key added from a new table) makes the plan be read
again and the reset rerun.

Rows the namespace held before its first test (what ``worker_postgres_setup``
stored) are its baseline: :meth:`Resetter.snapshot` copies them to the client.
A seeded table no test changed is left alone; one that changed is emptied and
refilled from the copy. A change shows as a row count that differs or a row
whose ``xmin`` (the transaction that wrote it) is not one of the baseline's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from worker_utils.errors import WorkerUtilsError

if TYPE_CHECKING:
    import psycopg
    from psycopg import sql as sql_module


class ResetError(WorkerUtilsError, RuntimeError):
    """A reset could not bring the namespace back to its baseline."""


@dataclass
class _Table:
    oid: int
    ident: str  # schema-qualified and quoted
    partitioned: bool

    def only(self, sql: Any) -> sql_module.Composable:
        """The table for DELETE and SELECT; ``ONLY`` keeps inheritance children out."""
        name: sql_module.Composable = sql.SQL(self.ident)
        return name if self.partitioned else sql.SQL("ONLY ") + name


@dataclass
class _Seed:
    """A table's baseline rows, in COPY binary format."""

    columns: str
    rows: int
    xmins: list[str]
    data: bytes


@dataclass
class _Plan:
    tables: list[_Table]
    #: Sequence oid -> its start.
    starts: dict[int, int]
    #: Sequence oid -> its last value when the plan was read.
    positions: dict[int, int | None]
    fingerprint_sql: str
    fingerprint: str
    #: Sequence oid -> (start, baseline last value or None if never called).
    sequences: dict[int, tuple[int, int | None]] = field(default_factory=dict)
    delete_sql: str = ""
    full_sql: str = ""
    seeded: list[_Table] = field(default_factory=list)
    plain: list[_Table] = field(default_factory=list)


_TABLES = """
SELECT c.oid, quote_ident(n.nspname) || '.' || quote_ident(c.relname), c.relkind = 'p'
FROM pg_depend d
JOIN pg_class c ON c.oid = d.objid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_namespace'::regclass
  AND d.refobjid = ANY(%(nsp)s) AND c.relkind IN ('r', 'p') AND NOT c.relispartition
  AND NOT EXISTS (
      SELECT FROM pg_depend e
      WHERE e.classid = 'pg_class'::regclass AND e.objid = c.oid AND e.deptype = 'e'
  )
ORDER BY c.oid
"""

# Sequences owned by the tables (serial and identity columns): a rolled-back
# insert moves them on too, and ids should start over in every test.
_SEQUENCES = """
SELECT s.seqrelid, s.seqstart, pg_sequence_last_value(s.seqrelid)
FROM pg_depend d JOIN pg_sequence s ON s.seqrelid = d.objid
WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass
  AND d.refobjid = ANY(%(tables)s) AND d.deptype IN ('a', 'i')
"""

_REFERENCES = """
SELECT DISTINCT conrelid, confrelid FROM pg_constraint
WHERE contype = 'f' AND conrelid = ANY(%(tables)s) AND confrelid = ANY(%(tables)s)
  AND conrelid <> confrelid
"""

_EXTENSIONS = """
SELECT extname FROM pg_extension WHERE extnamespace = ANY(%(nsp)s) ORDER BY extname
"""

_COLUMNS = """
SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum) FROM pg_attribute
WHERE attrelid = %s AND attnum > 0 AND NOT attisdropped AND attgenerated = ''
"""


class Resetter:
    """Resets one namespace through one admin connection; keeps the plan between resets.

    Args:
        schemas: Returns the schemas the namespace's tables live in (read again
            with the plan: in database mode a test may create a schema).
        database: The namespace is a database: a new schema changes the fingerprint.
    """

    def __init__(
        self, schemas: Callable[[psycopg.Connection[Any]], list[str]], *, database: bool
    ) -> None:
        self._schemas = schemas
        self._database = database
        self._plan: _Plan | None = None
        self._seeds: dict[int, _Seed] = {}
        self._seed_sequences: dict[int, int | None] = {}
        self._references: list[tuple[int, int]] = []
        self._baseline_extensions: set[str] | None = None
        #: Extensions in the namespace that were not there at its first plan.
        self.extensions: list[str] = []

    def prepare(self, conn: psycopg.Connection[Any]) -> None:
        """Read the plan now, if not yet read: what the namespace holds is its baseline."""
        if self._plan is None:
            self._plan = self._read(conn)

    def holds_rows(self, conn: psycopg.Connection[Any]) -> bool:
        """Return True if any table of the namespace holds a row."""
        return any(self._filled(conn, self._read(conn, build=False)))

    def _filled(self, conn: psycopg.Connection[Any], plan: _Plan) -> list[bool]:
        import psycopg

        sql = psycopg.sql
        if not plan.tables:
            return []
        query = sql.SQL("SELECT ARRAY[{}]::bool[]").format(
            sql.SQL(", ").join(
                sql.SQL("EXISTS (SELECT FROM {})").format(t.only(sql)) for t in plan.tables
            )
        )
        return list(conn.execute(query).fetchone()[0])  # type: ignore[index]

    def snapshot(self, conn: psycopg.Connection[Any]) -> None:
        """Take the rows and sequence positions the namespace holds now as its baseline."""
        plan = self._read(conn, build=False)  # built below, with the baseline
        self._seeds = {}
        for table, has_rows in zip(plan.tables, self._filled(conn, plan), strict=True):
            if has_rows:
                self._seeds[table.oid] = self._copy_out(conn, table)
        self._seed_sequences = dict(plan.positions)
        oids = list(self._seeds)
        rows = conn.execute(_REFERENCES, {"tables": oids}).fetchall() if oids else []
        self._references = [(child, parent) for child, parent in rows]
        self._build(conn, plan)
        self._plan = plan

    def _copy_out(self, conn: psycopg.Connection[Any], table: _Table) -> _Seed:
        import psycopg

        sql = psycopg.sql
        columns = conn.execute(_COLUMNS, [table.oid]).fetchone()[0]  # type: ignore[index]
        rows, xmins = conn.execute(
            sql.SQL("SELECT count(*), array_agg(DISTINCT xmin::text) FROM {}").format(
                table.only(sql)
            )
        ).fetchone()  # type: ignore[misc]
        data = bytearray()
        with (
            conn.cursor() as cursor,
            cursor.copy(
                sql.SQL("COPY (SELECT {} FROM {}) TO STDOUT (FORMAT binary)").format(
                    sql.SQL(columns), table.only(sql)
                )
            ) as copy,
        ):
            for chunk in copy:
                data += chunk
        return _Seed(columns, rows, list(xmins), bytes(data))

    def reset(self, conn: psycopg.Connection[Any], mode: str) -> None:
        """Bring the namespace back to its baseline: ``mode`` is ``delete`` or ``truncate``.

        Raises:
            ResetError: Even with a freshly read plan the reset failed (a row
                outside the namespace refers to one inside, a seeded table lost a
                column); the message has the server's words.
        """
        import psycopg

        errors = psycopg.errors
        stale = (errors.ProgrammingError, errors.IntegrityError, errors.InternalError)
        plan = self._plan
        if plan is not None:
            try:
                if mode == "delete":
                    fingerprint = self._delete(conn, plan)
                else:
                    fingerprint = self._full(conn, plan, mode)
                if fingerprint == plan.fingerprint:
                    return
            except errors.LockNotAvailable:
                raise
            except stale:
                pass
        # First use, the namespace changed, or the plan was stale: read it again
        # and redo everything in one transaction.
        plan = self._plan = self._read(conn)
        try:
            self._full(conn, plan, mode)
        except errors.LockNotAvailable:
            raise
        except stale as exc:
            lines = str(exc).strip().splitlines()
            raise ResetError(lines[0] if lines else type(exc).__name__) from exc

    def _read(self, conn: psycopg.Connection[Any], *, build: bool = True) -> _Plan:
        import psycopg

        sql = psycopg.sql
        schemas = self._schemas(conn)
        nsp = [
            row[0]
            for row in conn.execute(
                "SELECT oid FROM pg_namespace WHERE nspname = ANY(%s) ORDER BY oid", [schemas]
            )
        ]
        tables = [_Table(*row) for row in conn.execute(_TABLES, {"nsp": nsp})]
        extensions = [row[0] for row in conn.execute(_EXTENSIONS, {"nsp": nsp})]
        if self._baseline_extensions is None:
            self._baseline_extensions = set(extensions)
        self.extensions = [e for e in extensions if e not in self._baseline_extensions]
        oids = [t.oid for t in tables]
        rows = conn.execute(_SEQUENCES, {"tables": oids}).fetchall() if oids else []
        starts = {oid: start for oid, start, _ in rows}
        positions = {oid: last for oid, _, last in rows}
        parts: list[sql_module.Composable] = [
            sql.SQL(
                "(SELECT count(*) || ':' || coalesce(sum(objid::int8), 0) FROM pg_depend "
                "WHERE refclassid = 'pg_namespace'::regclass AND refobjid = ANY({}::oid[]))"
            ).format(sql.Literal(nsp))
        ]
        if self._database:
            parts.append(
                sql.SQL(
                    "(SELECT count(*) || ':' || sum(oid::int8) FROM pg_namespace "
                    "WHERE nspname !~ '^pg_' AND nspname <> 'information_schema')"
                )
            )
        fingerprint_sql = sql.SQL(" || '/' || ").join(parts).as_string(conn)
        fingerprint = conn.execute(sql.SQL("SELECT " + fingerprint_sql)).fetchone()[0]  # type: ignore[index]
        plan = _Plan(tables, starts, positions, fingerprint_sql, fingerprint)
        if build:
            self._build(conn, plan)
        return plan

    def _build(self, conn: psycopg.Connection[Any], plan: _Plan) -> None:
        """Write the plan's statements for the current baseline."""
        oids = {t.oid for t in plan.tables}
        self._seeds = {oid: seed for oid, seed in self._seeds.items() if oid in oids}
        plan.sequences = {
            oid: (start, self._seed_sequences.get(oid)) for oid, start in plan.starts.items()
        }
        plan.seeded = [t for t in plan.tables if t.oid in self._seeds]
        plan.plain = [t for t in plan.tables if t.oid not in self._seeds]
        plan.full_sql = self._statement(conn, plan, plan.tables, dirty=False)
        plan.delete_sql = self._statement(conn, plan, plan.plain, dirty=True)

    def _statement(
        self, conn: psycopg.Connection[Any], plan: _Plan, tables: Sequence[_Table], *, dirty: bool
    ) -> str:
        """Empty ``tables``, set moved sequences back, return the fingerprint (and seed state)."""
        import psycopg

        sql = psycopg.sql
        ctes = sql.SQL(", ").join(
            sql.SQL("d{} AS (DELETE FROM {})").format(sql.SQL(str(i)), t.only(sql))
            for i, t in enumerate(tables)
        )
        columns = [sql.SQL(plan.fingerprint_sql), self._sequences_sql(plan)]
        if dirty and plan.seeded:
            columns.append(
                sql.SQL("ARRAY[{}]::bool[]").format(
                    sql.SQL(", ").join(
                        sql.SQL(
                            "(SELECT count(*) <> {} OR coalesce(bool_or("
                            "xmin <> ALL({}::text[]::xid[])), false) FROM {})"
                        ).format(
                            sql.Literal(self._seeds[t.oid].rows),
                            sql.Literal(self._seeds[t.oid].xmins),
                            t.only(sql),
                        )
                        for t in plan.seeded
                    )
                )
            )
        query = sql.SQL("SELECT {}").format(sql.SQL(", ").join(columns))
        if tables:
            query = sql.SQL("WITH {} {}").format(ctes, query)
        return query.as_string(conn)

    def _sequences_sql(self, plan: _Plan) -> sql_module.Composable:
        import psycopg

        sql = psycopg.sql
        if not plan.sequences:
            return sql.SQL("0")
        values = sql.SQL(", ").join(
            sql.SQL("({}::oid::regclass, {}::int8, {}::int8)").format(
                sql.Literal(oid), sql.Literal(last), sql.Literal(start)
            )
            for oid, (start, last) in sorted(plan.sequences.items())
        )
        # A sequence not yet called has no last value: back to its start, uncalled.
        return sql.SQL(
            "(SELECT count(setval(q.s, coalesce(q.last, q.start), q.last IS NOT NULL)) "
            "FROM (VALUES {}) AS q(s, last, start) "
            "WHERE pg_sequence_last_value(q.s) IS DISTINCT FROM q.last)"
        ).format(values)

    def _delete(self, conn: psycopg.Connection[Any], plan: _Plan) -> str:
        row = conn.execute(plan.delete_sql, prepare=True).fetchone()
        assert row is not None
        if plan.seeded:
            dirty = {t.oid for t, changed in zip(plan.seeded, row[2], strict=True) if changed}
            if dirty:
                with conn.transaction():
                    self._refill(conn, plan, dirty, empty=True)
        return str(row[0])

    def _full(self, conn: psycopg.Connection[Any], plan: _Plan, mode: str) -> str:
        """Empty every table (``TRUNCATE`` in truncate mode) and refill the seeded ones."""
        import psycopg

        sql = psycopg.sql
        with conn.transaction():
            if mode == "truncate" and plan.tables:
                conn.execute(
                    sql.SQL("TRUNCATE {} RESTART IDENTITY CASCADE").format(
                        sql.SQL(", ").join(sql.SQL(t.ident) for t in plan.tables)
                    )
                )
            row = conn.execute(plan.full_sql).fetchone()
            self._refill(conn, plan, {t.oid for t in plan.seeded}, empty=False)
        assert row is not None
        return str(row[0])

    def _refill(
        self, conn: psycopg.Connection[Any], plan: _Plan, dirty: set[int], *, empty: bool
    ) -> None:
        """Put the baseline rows back in ``dirty`` seeded tables (and those that refer to them)."""
        import psycopg

        sql = psycopg.sql
        if not dirty:
            return
        # A seeded table whose rows refer to a refilled table is refilled too:
        # its rows would block the delete or be gone with ON DELETE CASCADE.
        grown = True
        while grown:
            grown = False
            for child, parent in self._references:
                if parent in dirty and child not in dirty:
                    dirty.add(child)
                    grown = True
        tables = [t for t in plan.seeded if t.oid in dirty]
        conn.execute("SET CONSTRAINTS ALL DEFERRED")
        if empty:
            conn.execute(
                sql.SQL("WITH {} SELECT").format(
                    sql.SQL(", ").join(
                        sql.SQL("d{} AS (DELETE FROM {})").format(sql.SQL(str(i)), t.only(sql))
                        for i, t in enumerate(tables)
                    )
                )
            )
        for table in self._parents_first(tables):
            seed = self._seeds[table.oid]
            with (
                conn.cursor() as cursor,
                cursor.copy(
                    sql.SQL("COPY {} ({}) FROM STDIN (FORMAT binary)").format(
                        sql.SQL(table.ident), sql.SQL(seed.columns)
                    )
                ) as copy,
            ):
                copy.write(seed.data)
        xid = conn.execute("SELECT (txid_current() % 4294967296)::text").fetchone()[0]  # type: ignore[index]
        for table in tables:
            self._seeds[table.oid].xmins = [xid]
        # The rows' new writer is part of the check: a new statement.
        plan.delete_sql = self._statement(conn, plan, plan.plain, dirty=True)

    def _parents_first(self, tables: list[_Table]) -> list[_Table]:
        """Order ``tables`` so that each follows those it refers to (a cycle keeps its order)."""
        oids = {t.oid for t in tables}
        parents: dict[int, set[int]] = {t.oid: set() for t in tables}
        for child, parent in self._references:
            if child in oids and parent in oids:
                parents[child].add(parent)
        done: list[_Table] = []
        left = list(tables)
        while left:
            ready = [t for t in left if not parents[t.oid] - {d.oid for d in done}]
            if not ready:  # a cycle: deferrable constraints still let it through
                ready = left[:1]
            done.extend(ready)
            left = [t for t in left if t not in ready]
        return done
