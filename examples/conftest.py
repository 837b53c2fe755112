"""The demo's run-wide setup: tables every worker's schema starts with."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

# A suite of its own, with its own pytest.ini: `pytest examples/sandbox_service -n 2`.
collect_ignore = ["sandbox_service"]


@pytest.fixture(scope="session")
def worker_postgres_setup() -> Callable[[Any], None]:
    def migrate(conn: Any) -> None:
        conn.execute("CREATE TABLE visit (id int PRIMARY KEY, who text NOT NULL)")

    return migrate


@pytest.fixture(scope="session", autouse=True)
def _every_worker_takes_its_database_and_schema(
    worker_postgres_namespace: Any, worker_redis_lease: Any
) -> None:
    """Whichever tests the scheduler gives a worker, the final table shows its database.

    A Redis database is leased on first use, so a worker that ran no Redis test
    would have none to show.
    """
