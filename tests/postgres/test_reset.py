"""The delete and truncate resets, on a namespace of the real server, without pytest in between."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from tests.postgres.conftest import URL, execute
from worker_utils import postgres
from worker_utils.postgres import _clone, _namespace

Conn = psycopg.Connection[Any]


@contextlib.contextmanager
def made(prefix: str, kind: str) -> Iterator[postgres.WorkerNamespace]:
    run_uid = uuid.uuid4().hex
    name = postgres.worker_postgres_name(run_uid, "gw0", prefix)
    space = postgres.WorkerNamespace(URL, name, run_uid, kind=kind)
    space.create()
    try:
        yield space
    finally:
        space.drop()


@pytest.fixture(params=["schema", "database"])
def namespace(request: pytest.FixtureRequest, prefix: str) -> Iterator[postgres.WorkerNamespace]:
    with made(prefix, request.param) as space:
        yield space


@pytest.fixture
def conn(namespace: postgres.WorkerNamespace) -> Iterator[Conn]:
    with namespace.connect(autocommit=True) as connection:
        yield connection


def count(conn: Conn, table: str) -> int:
    return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])  # type: ignore[index]


def rows(conn: Conn, query: str) -> list[tuple[Any, ...]]:
    return conn.execute(query).fetchall()  # type: ignore[call-overload, no-any-return]


def make_shop(conn: Conn) -> None:
    conn.execute(
        """
        CREATE TABLE customer (id serial PRIMARY KEY, name text NOT NULL);
        CREATE TABLE orders (id serial PRIMARY KEY, customer int NOT NULL REFERENCES customer);
        CREATE TABLE line (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                           orders int REFERENCES orders ON DELETE CASCADE, qty int);
        """
    )


def fill_shop(conn: Conn) -> None:
    conn.execute("INSERT INTO customer (name) VALUES ('ann'), ('bob')")
    conn.execute("INSERT INTO orders (customer) VALUES (1), (2)")
    conn.execute("INSERT INTO line (orders, qty) VALUES (1, 3), (2, 4)")


@pytest.mark.parametrize("mode", ["delete", "truncate"])
def test_a_reset_empties_linked_tables_and_restarts_their_ids(
    namespace: postgres.WorkerNamespace, conn: Conn, mode: str
) -> None:
    make_shop(conn)
    for _ in range(3):
        fill_shop(conn)
        assert rows(conn, "SELECT max(id) FROM line") == [(2,)]
        namespace.reset(mode)
        assert [count(conn, t) for t in ("customer", "orders", "line")] == [0, 0, 0]


def test_a_delete_reset_empties_foreign_key_cycles_and_self_references(
    namespace: postgres.WorkerNamespace, conn: Conn
) -> None:
    conn.execute(
        """
        CREATE TABLE node (id int PRIMARY KEY, parent int REFERENCES node);
        CREATE TABLE a (id int PRIMARY KEY, b int);
        CREATE TABLE b (id int PRIMARY KEY, a int REFERENCES a);
        ALTER TABLE a ADD FOREIGN KEY (b) REFERENCES b;
        """
    )
    for _ in range(2):
        conn.execute("INSERT INTO node VALUES (1, NULL), (2, 1), (3, 2)")
        conn.execute("INSERT INTO a VALUES (1, NULL); INSERT INTO b VALUES (1, 1)")
        conn.execute("UPDATE a SET b = 1")
        namespace.reset("delete")
        assert [count(conn, t) for t in ("node", "a", "b")] == [0, 0, 0]


def test_a_delete_reset_follows_tables_created_renamed_and_dropped_between_resets(
    namespace: postgres.WorkerNamespace, conn: Conn
) -> None:
    make_shop(conn)
    fill_shop(conn)
    namespace.reset("delete")  # the plan is read here
    conn.execute("CREATE TABLE note (id serial PRIMARY KEY, customer int REFERENCES customer)")
    fill_shop(conn)
    conn.execute("INSERT INTO note (customer) VALUES (1)")
    namespace.reset("delete")
    assert [count(conn, t) for t in ("customer", "note")] == [0, 0]
    conn.execute("ALTER TABLE note RENAME TO memo; DROP TABLE line")
    fill_shop_without_lines = (
        "INSERT INTO customer (name) VALUES ('cy'); INSERT INTO memo (customer) VALUES (1)"
    )
    conn.execute(fill_shop_without_lines)
    namespace.reset("delete")
    assert [count(conn, t) for t in ("customer", "memo")] == [0, 0]
    assert rows(conn, "SELECT nextval('note_id_seq')") == [(1,)]


def test_a_delete_reset_empties_partitions_and_inheritance_children(
    namespace: postgres.WorkerNamespace, conn: Conn
) -> None:
    conn.execute(
        """
        CREATE TABLE event (id int, at date) PARTITION BY RANGE (at);
        CREATE TABLE event_2026 PARTITION OF event FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
        CREATE TABLE animal (id int);
        CREATE TABLE cat (lives int) INHERITS (animal);
        """
    )
    conn.execute("INSERT INTO event VALUES (1, '2026-05-01'); INSERT INTO animal VALUES (1)")
    conn.execute("INSERT INTO cat VALUES (2, 9)")
    namespace.reset("delete")
    assert [count(conn, t) for t in ("event", "animal", "cat")] == [0, 0, 0]


@pytest.fixture
def short_lock_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    """The namespaces made after it try a reset for 0.2 s, not 2 s, before ending lock holders."""
    monkeypatch.setattr(_namespace, "_LOCK_TIMEOUT", "200ms")


def test_a_reset_waits_for_no_connection_the_test_left_holding_a_row_lock(
    short_lock_timeout: None, namespace: postgres.WorkerNamespace, conn: Conn
) -> None:
    make_shop(conn)
    fill_shop(conn)
    namespace.reset("delete")
    fill_shop(conn)
    leaked = namespace.connect()
    leaked.execute("SELECT * FROM customer FOR UPDATE")  # idle in transaction from here on
    try:
        namespace.reset("delete")
        with pytest.raises(psycopg.OperationalError, match="terminating connection"):
            leaked.execute("SELECT 1")
    finally:
        leaked.close()
    with namespace.connect() as fresh:
        assert count(fresh, "customer") == 0


def test_rows_outside_the_namespace_that_refer_to_it_fail_the_reset_with_the_servers_words(
    prefix: str,
) -> None:
    outside = f"{prefix}_outside"
    with made(prefix, "schema") as namespace, namespace.connect(autocommit=True) as conn:
        make_shop(conn)
        fill_shop(conn)
        execute(
            f"CREATE SCHEMA {outside}; "
            f'CREATE TABLE {outside}.ref (c int REFERENCES "{namespace.name}".customer); '
            f"INSERT INTO {outside}.ref VALUES (1)"
        )
        try:
            with pytest.raises(postgres.PostgresError) as failed:
                namespace.reset("delete")
        finally:
            execute(f"DROP SCHEMA {outside} CASCADE")
    assert str(failed.value).startswith(
        f"worker_postgres: the delete reset of schema '{namespace.name}' failed: "
        'update or delete on table "customer" violates foreign key constraint'
    )


def seed_shop(namespace: postgres.WorkerNamespace, conn: Conn) -> None:
    make_shop(conn)
    fill_shop(conn)
    conn.execute("CREATE TABLE empty_at_start (id serial PRIMARY KEY)")
    namespace.snapshot()


def xmins(conn: Conn, table: str) -> list[str]:
    return [row[0] for row in rows(conn, f"SELECT xmin::text FROM {table} ORDER BY id")]


@pytest.mark.parametrize("mode", ["delete", "truncate"])
def test_rows_there_at_the_snapshot_survive_resets_and_their_ids_carry_on(
    namespace: postgres.WorkerNamespace, conn: Conn, mode: str
) -> None:
    seed_shop(namespace, conn)
    before = rows(conn, "SELECT * FROM customer ORDER BY id")
    for _ in range(2):
        conn.execute("INSERT INTO customer (name) VALUES ('new')")
        conn.execute("INSERT INTO empty_at_start DEFAULT VALUES")
        namespace.reset(mode)
        assert rows(conn, "SELECT * FROM customer ORDER BY id") == before
        assert [count(conn, t) for t in ("orders", "line", "empty_at_start")] == [2, 2, 0]
        assert rows(conn, "SELECT nextval('customer_id_seq')") == [(3,)]
        assert rows(conn, "SELECT nextval('empty_at_start_id_seq')") == [(1,)]
        namespace.reset(mode)  # the nextvals above moved the sequences on


def test_a_delete_reset_leaves_seeded_tables_no_test_changed_alone(
    namespace: postgres.WorkerNamespace, conn: Conn
) -> None:
    seed_shop(namespace, conn)
    written = {t: xmins(conn, t) for t in ("customer", "orders", "line")}
    conn.execute("INSERT INTO empty_at_start DEFAULT VALUES")
    namespace.reset("delete")
    assert {t: xmins(conn, t) for t in written} == written


@pytest.mark.parametrize(
    "change",
    [
        "UPDATE customer SET name = 'changed' WHERE id = 1",
        "DELETE FROM line WHERE id = 1",
        "INSERT INTO orders (customer) VALUES (1)",
        "DELETE FROM line",
    ],
)
def test_a_delete_reset_refills_a_seeded_table_a_test_changed(
    namespace: postgres.WorkerNamespace, conn: Conn, change: str
) -> None:
    seed_shop(namespace, conn)
    seeded = {
        t: rows(conn, f"SELECT * FROM {t} ORDER BY id") for t in ("customer", "orders", "line")
    }
    conn.execute(change)
    for _ in range(2):
        namespace.reset("delete")
        assert {t: rows(conn, f"SELECT * FROM {t} ORDER BY id") for t in seeded} == seeded
        conn.execute("UPDATE line SET qty = qty + 1")  # changed again: refilled again


def test_a_changed_seeded_parent_brings_back_the_rows_that_refer_to_it(
    namespace: postgres.WorkerNamespace, conn: Conn
) -> None:
    seed_shop(namespace, conn)
    seeded = rows(conn, "SELECT * FROM line ORDER BY id")
    conn.execute("DELETE FROM orders WHERE id = 2")  # ON DELETE CASCADE takes line 2 with it
    conn.execute("UPDATE orders SET customer = 2")
    namespace.reset("delete")
    assert rows(conn, "SELECT * FROM line ORDER BY id") == seeded
    assert rows(conn, "SELECT id, customer FROM orders ORDER BY id") == [(1, 1), (2, 2)]


def test_a_template_with_what_a_schema_copy_cannot_reproduce_is_named(prefix: str) -> None:
    with made(prefix, "schema") as namespace, namespace.connect(autocommit=True) as conn:
        assert _clone.unclonable(conn, namespace.name) is None
        make_shop(conn)
        conn.execute("CREATE VIEW names AS SELECT name FROM customer")
        assert _clone.unclonable(conn, namespace.name) is None
        conn.execute(
            """
            CREATE TYPE mood AS ENUM ('ok');
            CREATE COLLATION nocase (provider = icu, locale = 'und-u-ks-level2',
                                     deterministic = false);
            CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql
                AS 'BEGIN RETURN NEW; END';
            """
        )
        assert _clone.unclonable(conn, namespace.name) == (
            "it holds collation nocase, function touch, type mood"
        )
        conn.execute("DROP TYPE mood; DROP COLLATION nocase; CREATE SEQUENCE loose")
        conn.execute("CREATE TRIGGER touched BEFORE INSERT ON customer EXECUTE FUNCTION touch()")
        assert _clone.unclonable(conn, namespace.name) == (
            "it holds function touch, sequence loose, trigger touched"
        )
