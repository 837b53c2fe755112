"""The Docker engine for the docker-backend tests, and inner runs that use it.

The tests use the local images that ``tests/docker/engine.sh start`` builds
from Debian's packages (no registry needed) and that engine's socket unless
``DOCKER_HOST`` names another. Without a reachable engine they skip with a
notice, except under CI, where a missing engine fails them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from worker_utils.servers import docker as backend

ENGINE_SCRIPT = Path(__file__).with_name("engine.sh")
PRIVATE_SOCKET = "unix:///run/worker-utils-docker.sock"
IMAGES = {"postgres": "worker-utils-local/postgres:15", "redis": "worker-utils-local/redis:7"}
LABEL = backend.LABEL_PREFIX
SKIPPED = "Docker tests need an engine with the local images"
ENABLE = (
    "start one with `sudo tests/docker/engine.sh start` "
    "(or set DOCKER_HOST to an engine that has the images it builds)"
)


def docker_host() -> str:
    """The engine the tests use: DOCKER_HOST, else the private one of engine.sh."""
    return os.environ.get("DOCKER_HOST") or PRIVATE_SOCKET


@pytest.fixture(scope="session")
def docker_engine() -> Iterator[Any]:
    """A client of the test engine, which has the local images; skips without one."""
    env = {**os.environ, "DOCKER_HOST": docker_host()}
    try:
        client = backend.engine(env)
        for image in IMAGES.values():
            client.images.get(image)
    except Exception as exc:
        message = f"{SKIPPED} ({exc}); {ENABLE}"
        if os.environ.get("CI"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    yield client
    client.close()


def our_containers(client: Any, run: str | None = None) -> list[Any]:
    """The containers with our creator label (of run ``run`` if given)."""
    labels = [f"{LABEL}.creator={backend.CREATOR}"]
    if run is not None:
        labels.append(f"{LABEL}.run={run}")
    return list(client.containers.list(all=True, filters={"label": labels}))


class Inner:
    """Runs inner pytest sessions on the docker backend, in their own process groups."""

    def __init__(self, pytester: pytest.Pytester, record_dir: Path) -> None:
        self.pytester = pytester
        self.record_dir = record_dir

    def env(self, **extra: str) -> dict[str, str]:
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("WORKER_UTILS_", "PYTEST_XDIST", "PYTEST_CURRENT"))
        }
        # A private temp root: these runs reap only each other's dead run directories,
        # not those that other tests' crashed runs leave for their own next run.
        tmp = self.pytester.path / "tmp"
        tmp.mkdir(exist_ok=True)
        env.update(
            TMPDIR=str(tmp),
            DOCKER_HOST=docker_host(),
            WORKER_UTILS_SERVERS="docker",
            WORKER_UTILS_POSTGRES_IMAGE=IMAGES["postgres"],
            WORKER_UTILS_REDIS_IMAGE=IMAGES["redis"],
        )
        env.update(extra)
        return env

    def popen(self, *args: str, directory: Path | None = None, **env: str) -> Any:
        return subprocess.Popen(
            [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:randomly", *args],
            cwd=directory or self.pytester.path,
            env=self.env(**env),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )

    def run(self, *args: str, directory: Path | None = None, **env: str) -> tuple[int, str]:
        process = self.popen(*args, directory=directory, **env)
        output, _ = process.communicate(timeout=240)
        return process.returncode, output

    def wait_for_records(self, count: int, process: Any, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while len(list(self.record_dir.glob("*.json"))) < count:
            if process.poll() is not None:
                raise AssertionError(f"the inner run ended early:\n{process.stdout.read()}")
            if time.monotonic() > deadline:
                raise AssertionError("the inner run recorded nothing in time")
            time.sleep(0.05)


@pytest.fixture
def inner(pytester: pytest.Pytester, record_dir: Path, docker_engine: Any) -> Inner:
    return Inner(pytester, record_dir)


def report_skips(terminalreporter: pytest.TerminalReporter) -> None:
    """Print one notice for the Docker tests skipped for want of an engine.

    Called by the suite's top conftest.py: under xdist the controller never
    loads this one, which only the workers' collection reaches.
    """
    skipped = [
        report
        for report in terminalreporter.stats.get("skipped", [])
        if SKIPPED in str(getattr(report, "longrepr", ""))
    ]
    if skipped:
        terminalreporter.write_line(
            f"notice: {len(skipped)} Docker tests skipped: no engine reachable at "
            f"{docker_host()}; to run them, {ENABLE}"
        )
