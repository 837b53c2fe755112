"""Copying a template schema: what ``CREATE DATABASE ... TEMPLATE`` does for a database.

The copy replays the template from the catalogs in the caller's transaction:
tables, their serial and identity sequences (with their positions), indexes,
constraints, foreign keys, rows and views. :func:`unclonable` says when a
template holds more than that; its workers then run the setup themselves.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from worker_utils.postgres._dsn import psycopg_module

if TYPE_CHECKING:
    import psycopg

__all__ = ["clone_schema", "unclonable"]

# What a template schema holds that clone_schema cannot copy (it copies tables,
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


def unclonable(conn: psycopg.Connection[Any], schema: str) -> str | None:
    """Return why ``schema`` cannot be copied by :func:`clone_schema`, or None if it can."""
    rows = conn.execute(_UNCLONABLE, {"s": schema}).fetchall()
    if not rows:
        return None
    return "it holds " + ", ".join(row[0] for row in rows)


def clone_schema(
    conn: psycopg.Connection[Any], source: str, target: str, extension_schema: str
) -> bool:
    """Copy the tables, sequences, indexes, constraints, rows and views of ``source``.

    Returns True if rows were copied.

    Runs inside the caller's transaction. Definitions are read with ``source``
    first on the search path, so that they name its objects unqualified, and
    replayed with ``target`` first, so that those names land in the copy.
    """
    sql = psycopg_module().sql
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
    # LIKE ... INCLUDING INDEXES would name the copies by the default rules
    # (product_category_id_slug_key for uniq_product_slug_per_category): they are
    # made from their definitions instead, under their own names.
    indexes = conn.execute(
        """
        SELECT t.relname, c.conname, coalesce(
            pg_get_constraintdef(c.oid),
            -- The server qualifies the table: the copy's index goes on the copy.
            overlay(pg_get_indexdef(x.indexrelid)
                    PLACING ' ON ' || quote_ident(%(target)s) || '.'
                    FROM strpos(pg_get_indexdef(x.indexrelid), ' ON ' || quote_ident(%(s)s) || '.')
                    FOR length(' ON ' || quote_ident(%(s)s) || '.')))
        FROM pg_index x
        JOIN pg_class t ON t.oid = x.indrelid
        LEFT JOIN pg_constraint c ON c.conindid = x.indexrelid AND c.conrelid = t.oid
             AND c.contype IN ('p', 'u', 'x')
        WHERE t.relnamespace = %(s)s::regnamespace AND t.relkind = 'r'
        ORDER BY x.indexrelid
        """,
        {"s": source, "target": target},
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
            sql.SQL("CREATE TABLE {} (LIKE {} INCLUDING ALL EXCLUDING INDEXES)").format(
                sql.Identifier(target, table), sql.Identifier(source, table)
            )
        )
    for table, column, seq, identity, *params, last_value in sequences:
        if identity:  # LIKE made a new identity sequence: only its position is copied
            made, made_name = conn.execute(
                "SELECT s, (SELECT relname FROM pg_class WHERE oid = s::regclass) "
                "FROM pg_get_serial_sequence(%s, %s) AS s",
                [f'"{target}"."{table}"', column],
            ).fetchone()  # type: ignore[misc]
            new_seq = dst.as_string(conn) + "." + sql.Identifier(seq).as_string(conn)
            # Compared by name: the server quotes the qualified name only where needed.
            if made_name != seq:
                conn.execute(
                    sql.SQL("ALTER SEQUENCE {} RENAME TO {}").format(
                        sql.SQL(made), sql.Identifier(seq)
                    )
                )
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
    for table, constraint, definition in indexes:
        if constraint is None:  # the server's own CREATE INDEX statement
            conn.execute(sql.SQL(definition))
        else:
            conn.execute(
                sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {}").format(
                    sql.Identifier(target, table), sql.Identifier(constraint), sql.SQL(definition)
                )
            )
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
