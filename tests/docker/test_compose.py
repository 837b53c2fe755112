"""The compose recipe of docs/docker.md, run as written against the test engine."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import RECORD_SNIPPET

from .conftest import IMAGES, docker_host

COMPOSE_FILE = Path(__file__).parents[2] / "examples" / "docker" / "compose.yaml"

SUITE = (
    RECORD_SNIPPET
    + """
import pytest

@pytest.mark.parametrize("n", range(4))
def test_write(worker_postgres, worker_redis, worker_postgres_url, worker_redis_url, n):
    worker_postgres.execute("CREATE TABLE IF NOT EXISTS item (id int PRIMARY KEY)")
    worker_postgres.execute("INSERT INTO item VALUES (1)")
    assert worker_redis.set("key", n, nx=True)
    record(postgres=worker_postgres_url, redis=worker_redis_url)
"""
)


def compose_command() -> list[str]:
    """``docker compose`` (v2) where the plugin is installed, else ``docker-compose`` (v1)."""
    docker = shutil.which("docker")
    if docker is not None:
        plugin = subprocess.run([docker, "compose", "version"], capture_output=True, check=False)
        if plugin.returncode == 0:
            return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    if legacy is None:
        if os.environ.get("CI"):
            pytest.fail("compose test: neither `docker compose` nor `docker-compose` is installed")
        pytest.skip("compose test: install docker-compose (tests/docker/engine.sh start does)")
    return [legacy]


@pytest.fixture
def stack(docker_engine: Any) -> Iterator[tuple[list[str], dict[str, str], str]]:
    """The compose file's services, up under a project name of this test's own, then down."""
    project = f"wu-compose-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "DOCKER_HOST": docker_host(),
        "COMPOSE_FILE": str(COMPOSE_FILE),
        "COMPOSE_PROJECT_NAME": project,
        "WORKER_UTILS_POSTGRES_IMAGE": IMAGES["postgres"],
        "WORKER_UTILS_REDIS_IMAGE": IMAGES["redis"],
    }
    compose = compose_command()
    try:
        subprocess.run([*compose, "up", "-d"], env=env, check=True, capture_output=True)
        yield compose, env, project
    finally:
        subprocess.run([*compose, "down", "-v"], env=env, check=False, capture_output=True)


def _healthy(client: Any, project: str) -> bool:
    containers = client.containers.list(
        all=True, filters={"label": f"com.docker.compose.project={project}"}
    )
    states = [c.attrs["State"].get("Health", {}).get("Status") for c in containers]
    return len(states) == 2 and all(state == "healthy" for state in states)


def test_the_compose_recipe_serves_a_parallel_run_and_comes_down_without_leftovers(
    stack: tuple[list[str], dict[str, str], str],
    docker_engine: Any,
    pytester: pytest.Pytester,
    read_records: Any,
) -> None:
    compose, env, project = stack
    deadline = time.monotonic() + 60  # `up --wait` of compose v2, which v1 lacks
    while not _healthy(docker_engine, project):
        assert time.monotonic() < deadline, "the compose services never became healthy"
        time.sleep(0.2)

    def port(service: str, number: int) -> str:
        result = subprocess.run(
            [*compose, "port", service, str(number)],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        )
        return result.stdout.strip()

    postgres = f"postgresql://postgres@{port('postgres', 5432)}/postgres"
    redis = f"redis://{port('redis', 6379)}/0"  # noqa: WU602 the server, for the plugin
    assert postgres.startswith("postgresql://postgres@127.0.0.1:")
    pytester.makepyfile(SUITE)
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-n", "2", "-p", "no:randomly", "-p", "no:cacheprovider"],
        cwd=pytester.path,
        env={
            **os.environ,
            "WORKER_UTILS_POSTGRES_URL": postgres,
            "WORKER_UTILS_REDIS_URL": redis,
        },
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    seen = read_records()
    assert len(seen) == 4
    # Two workers, each on its own database of the stack's servers.
    assert len({record["postgres"] for record in seen}) == 2
    assert len({record["redis"] for record in seen}) == 2
    assert all(record["postgres"].startswith(postgres.rsplit("/", 1)[0]) for record in seen)

    subprocess.run([*compose, "down", "-v"], env=env, check=True, capture_output=True)
    left = docker_engine.containers.list(
        all=True, filters={"label": f"com.docker.compose.project={project}"}
    )
    assert left == []
