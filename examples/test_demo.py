"""A parallel demo: every test would collide with its neighbours without worker_utils.

Run it with `make demo` (`pytest examples -n auto --worker-utils-summary=table`):
no server is configured, so the plugin starts one PostgreSQL and one Redis for
the run, gives each worker its own schema, database, ports and directory, and
ends with a table of them.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest

import worker_utils


@pytest.mark.parametrize("n", range(12))
def test_each_worker_has_its_own_postgres_rows(worker_postgres: Any, n: int) -> None:
    worker_postgres.execute("INSERT INTO visit VALUES (1, %s)", [f"test {n}"])
    (count,) = worker_postgres.execute("SELECT count(*) FROM visit").fetchone()
    assert count == 1  # the same primary key in every test, and no leftovers


@pytest.mark.parametrize("n", range(12))
def test_each_worker_has_its_own_redis_database(worker_redis: Any, n: int) -> None:
    assert worker_redis.incr("hits") == 1
    assert worker_redis.dbsize() == 1


@pytest.mark.parametrize("n", range(6))
def test_each_worker_binds_its_own_ports(worker_port: Any, n: int) -> None:
    with (
        socket.create_server(("127.0.0.1", worker_port())),
        socket.create_server(("127.0.0.1", worker_port())),
    ):
        pass


@pytest.mark.parametrize("n", range(6))
def test_each_worker_has_its_own_directory(worker_tmp_path: Path, n: int) -> None:
    marker = worker_tmp_path / "owner"
    if marker.exists():
        assert marker.read_text() == worker_utils.get_worker_id()
    marker.write_text(worker_utils.get_worker_id())
