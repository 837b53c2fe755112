"""Throwaway Redis servers for the Redis tests, and inner runs of the example suites."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from worker_utils import ports
from worker_utils.servers._process import ProcessId, wait_for_port

EXAMPLES = Path(__file__).parent / "examples"
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


@dataclass
class Server:
    """A redis-server started for one test."""

    port: int
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self, db: int = 0, **kwargs: object) -> redis.Redis:
        return redis.Redis(port=self.port, db=db, **kwargs)  # type: ignore[arg-type]

    def keys_by_db(self, password: str | None = None) -> dict[int, list[bytes]]:
        """Every key of the server, by database (the databases that hold some)."""
        with redis.Redis(port=self.port, password=password) as client:
            count = int(client.config_get("databases")["databases"])
        found = {}
        for db in range(count):
            with redis.Redis(port=self.port, db=db, password=password) as client:
                keys = sorted(client.scan_iter())
            if keys:
                found[db] = keys
        return found


class ServerFactory:
    def __init__(self) -> None:
        self.servers: list[Server] = []

    def __call__(self, *args: str) -> Server:
        lease = ports.lease_port()
        try:
            process = subprocess.Popen(
                [REDIS_SERVER, "--port", str(lease.port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", *args],
                stdout=subprocess.DEVNULL,
            )  # fmt: skip
            wait_for_port("127.0.0.1", lease.port, 10, process=ProcessId.of(process.pid))
        finally:
            lease.release()
        server = Server(lease.port, process)
        self.servers.append(server)
        return server

    def stop(self) -> None:
        for server in self.servers:
            server.process.terminate()
            server.process.wait(timeout=10)


@pytest.fixture(autouse=True)
def _light_inner_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Inner pytest runs skip two unrelated installed plugins: half their start-up time."""
    given = os.environ.get("PYTEST_ADDOPTS", "")
    monkeypatch.setenv("PYTEST_ADDOPTS", f"{given} -p no:pytest_postgresql -p no:pytest_redis")


@pytest.fixture
def redis_server_factory() -> Iterator[ServerFactory]:
    """Starts redis-server processes with extra arguments; stops them after the test."""
    factory = ServerFactory()
    yield factory
    factory.stop()


@pytest.fixture
def redis_server(redis_server_factory: ServerFactory) -> Server:
    """A fresh redis-server with the default 16 databases."""
    return redis_server_factory()


@pytest.fixture
def example(pytester: pytest.Pytester) -> Example:
    return Example(pytester)


class Example:
    """Copies an example suite into the pytester directory and runs it."""

    def __init__(self, pytester: pytest.Pytester) -> None:
        self.pytester = pytester

    def copy(self, name: str, directory: Path | None = None) -> Path:
        target = (directory or self.pytester.path) / f"test_{name}.py"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(EXAMPLES / f"{name}.py", target)
        return target

    def popen(self, directory: Path, *args: str, env: dict[str, str]) -> subprocess.Popen[str]:
        """Start an inner pytest in ``directory`` without waiting for it."""
        return subprocess.Popen(
            [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
            cwd=directory,
            env={**os.environ, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
