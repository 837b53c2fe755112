"""The demo's run-wide setup: tables every worker's schema starts with."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

# Projects of their own, each with its own pytest.ini: run them from their directory,
# such as `cd examples/django_app && pytest -n 2`.
collect_ignore = ["async_app", "django_app", "rq_app", "sandbox_service", "sqlalchemy_app"]


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
