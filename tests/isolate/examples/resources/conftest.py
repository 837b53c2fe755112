"""Tests that record which of their worker's resources they saw, in process and isolated."""

import json
import os
import sqlite3
import uuid
from pathlib import Path

import psycopg
import pytest
import redis
from psycopg import sql

from worker_utils.redis import LEASE_KEY_PREFIX


@pytest.fixture(scope="session")
def session_port(worker_port_factory):
    return worker_port_factory()


@pytest.fixture(scope="session")
def counted(worker_postgres_url):
    """A table whose every emptying bumps a sequence no reset touches: it counts the resets."""
    with psycopg.connect(worker_postgres_url, autocommit=True) as conn:
        if conn.execute("SELECT to_regclass('item')").fetchone()[0] is None:
            schema = conn.execute("SELECT current_schema()").fetchone()[0]
            counter = sql.Identifier(schema, "resets_seen")
            conn.execute(sql.SQL("CREATE SEQUENCE {}").format(counter))
            conn.execute("CREATE TABLE item (note text)")
            conn.execute(
                sql.SQL(
                    "CREATE FUNCTION count_reset() RETURNS trigger LANGUAGE plpgsql AS "
                    "$$ BEGIN PERFORM nextval({}); RETURN NULL; END $$"
                ).format(sql.Literal(f"{schema}.resets_seen"))
            )
            conn.execute(
                "CREATE TRIGGER item_emptied AFTER DELETE ON item "
                "FOR EACH STATEMENT EXECUTE FUNCTION count_reset()"
            )
    return worker_postgres_url


@pytest.fixture
def saw(
    request,
    counted,
    worker_redis,
    worker_redis_db,
    worker_redis_prefix,
    session_port,
    worker_tmp_path,
    worker_sqlite_path,
):
    """Record what this test sees of its worker's resources, then leave a row and a key."""

    def record(label):
        with psycopg.connect(counted) as conn:
            schema = conn.execute("SELECT current_schema()").fetchone()[0]
            comment = conn.execute(
                "SELECT obj_description(oid, 'pg_namespace') FROM pg_namespace WHERE nspname = %s",
                [schema],
            ).fetchone()[0]
            rows = [row[0] for row in conn.execute("SELECT note FROM item")]
            resets = conn.execute(
                "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM resets_seen"
            ).fetchone()[0]
            conn.execute("INSERT INTO item VALUES (%s)", [label])
        with sqlite3.connect(worker_sqlite_path) as db:
            db.execute("CREATE TABLE IF NOT EXISTS note (label text)")
            notes = [row[0] for row in db.execute("SELECT label FROM note")]
            db.execute("INSERT INTO note VALUES (?)", [label])
        db.close()
        with redis.Redis.from_url(os.environ["WORKER_UTILS_REDIS_URL"]) as server:
            lease = server.get(f"{LEASE_KEY_PREFIX}lease:{worker_redis_db}")
        data = {
            "label": label,
            "worker": os.environ.get("PYTEST_XDIST_WORKER", "master"),
            "pid": os.getpid(),
            "schema": schema,
            "schema_owner": json.loads(comment)["pid"],
            "rows": rows + notes,
            "resets": resets,
            "redis": [worker_redis_db, worker_redis_prefix],
            "redis_owner": json.loads(lease)["pid"] if lease else None,
            "keys": sorted(
                key.decode() for key in worker_redis.scan_iter(f"{worker_redis_prefix}*")
            ),
            "port": session_port,
            "tmp": str(worker_tmp_path),
            "sqlite": str(worker_sqlite_path),
        }
        worker_redis.set(f"{worker_redis_prefix}{label}", 1)
        directory = Path(os.environ["WU_TEST_RECORD_DIR"])
        (directory / f"{uuid.uuid4().hex}.json").write_text(json.dumps(data))

    return record
