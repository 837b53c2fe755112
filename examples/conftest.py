"""The demo's run-wide setup: tables every worker's schema starts with."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest


@pytest.fixture(scope="session")
def worker_postgres_setup() -> Callable[[Any], None]:
    def migrate(conn: Any) -> None:
        conn.execute("CREATE TABLE visit (id int PRIMARY KEY, who text NOT NULL)")

    return migrate
