"""The real PostgreSQL server for the PostgreSQL tests, and inner runs of the example suites.

``record_dir`` and ``read_records`` come from ``tests/conftest.py``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from worker_utils import postgres

EXAMPLES = Path(__file__).parent / "examples"
#: The server the tests use; the machine's own by default.
URL = os.environ.get(
    "WU_TEST_POSTGRES_URL",
    "postgresql://postgres@127.0.0.1:5432/test",  # noqa: WU202 the machine's server
)


def schemas(prefix: str = "wu_t", url: str = URL) -> list[str]:
    """The schemas in the database of ``url`` whose names start with ``prefix``."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT nspname FROM pg_namespace WHERE starts_with(nspname, %s) ORDER BY 1", [prefix]
        ).fetchall()
    return [row[0] for row in rows]


def databases(prefix: str) -> list[str]:
    """The databases on the test server whose names start with ``prefix``."""
    with psycopg.connect(URL) as conn:
        rows = conn.execute(
            "SELECT datname FROM pg_database WHERE starts_with(datname, %s) ORDER BY 1", [prefix]
        ).fetchall()
    return [row[0] for row in rows]


def execute(query: str, url: str = URL) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(query)  # type: ignore[call-overload]


class Example:
    """Copies example suites into a pytester directory and runs them."""

    def __init__(self, pytester: pytest.Pytester, prefix: str) -> None:
        self.pytester = pytester
        self.prefix = prefix

    def copy(self, name: str, directory: Path | None = None, ini: str = "") -> Path:
        target = directory or self.pytester.path
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy(EXAMPLES / f"{name}.py", target / f"test_{name}.py")
        (target / "pytest.ini").write_text(
            f"[pytest]\nworker_utils_postgres_prefix = {self.prefix}\n{ini}"
        )
        return target

    def popen(self, directory: Path, *args: str, env: dict[str, str] | None = None) -> Any:
        """Start an inner run in the background, in its own process group."""
        return subprocess.Popen(
            [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:randomly", *args],
            cwd=directory,
            env={**os.environ, **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )


@pytest.fixture
def prefix(request: pytest.FixtureRequest) -> Iterator[str]:
    """A schema prefix private to this test; its leftovers are reported and removed."""
    name = f"wu_t{abs(hash(request.node.nodeid)) % 10**8}"
    yield name
    left = schemas(name)
    for schema in left:
        execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    left_databases = databases(name)
    for database in left_databases:
        execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    assert left == left_databases == [], f"left behind: {left + left_databases}"


@pytest.fixture
def example(pytester: pytest.Pytester, prefix: str, monkeypatch: pytest.MonkeyPatch) -> Example:
    monkeypatch.setenv(postgres.URL_VAR, URL)
    return Example(pytester, prefix)


@pytest.fixture
def scratch_database(example: Example, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A database of this test's own, now the inner runs' server URL.

    Schemas a killed run leaves there are out of sight of the start-of-run
    reaping of other runs on the same server, and extensions go with it.
    """
    name = f"wu_test_{uuid.uuid4().hex[:8]}"
    execute(f"CREATE DATABASE {name}")
    url = postgres.namespace_dsn(URL, dbname=name)
    monkeypatch.setenv(postgres.URL_VAR, url)
    yield url
    execute(f"DROP DATABASE {name} WITH (FORCE)")
