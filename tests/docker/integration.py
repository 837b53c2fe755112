"""``make integration``: this project's PostgreSQL and Redis tests against servers in containers.

Starts one PostgreSQL and one Redis container with the docker backend (labelled
as owned by this process, removed at the end, on Ctrl-C and on SIGTERM, and by
the next run after a crash), then runs ``tests/postgres`` and ``tests/redis``
with ``WU_TEST_POSTGRES_URL`` and ``WU_TEST_REDIS_URL`` pointing at them.
Images: ``WORKER_UTILS_POSTGRES_IMAGE`` and ``WORKER_UTILS_REDIS_IMAGE``, else
the local images of ``tests/docker/engine.sh`` when the engine has them, else
the pinned official ones. Extra arguments go to pytest.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.docker.conftest import IMAGES, docker_host  # noqa: E402
from worker_utils.servers import docker  # noqa: E402


def _image(kind: str, client: Any) -> str:
    given = os.environ.get(f"WORKER_UTILS_{kind.upper()}_IMAGE")
    if given:
        return given
    try:
        client.images.get(IMAGES[kind])
    except Exception:
        return docker.DEFAULT_IMAGES[kind]
    return IMAGES[kind]


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(args: list[str]) -> int:
    os.environ.setdefault("DOCKER_HOST", docker_host())
    os.environ[docker.OWNER_VAR] = docker.owner_value()  # this process owns the containers
    signal.signal(signal.SIGTERM, _interrupt)
    run = uuid.uuid4().hex
    try:
        client = docker.engine()
        images = {kind: _image(kind, client) for kind in ("postgres", "redis")}
        client.close()
        docker.reap()
        began = time.monotonic()
        postgres = docker.start_container("postgres", images["postgres"], run_uid=run)
        redis = docker.start_container("redis", images["redis"], run_uid=run)
    except docker.DockerError as exc:
        print(f"make integration: {exc}", file=sys.stderr)
        return 2
    try:
        print(
            f"make integration: {postgres['name']} ({postgres['image']}) and {redis['name']} "
            f"({redis['image']}) ready in {time.monotonic() - began:.1f}s",
            flush=True,
        )
        import psycopg

        with psycopg.connect(postgres["url"], autocommit=True) as conn:
            conn.execute("CREATE DATABASE test")
        env = {
            **os.environ,
            "WU_TEST_POSTGRES_URL": postgres["url"].rsplit("/", 1)[0] + "/test",
            "WU_TEST_REDIS_URL": redis["url"],
        }
        command = [sys.executable, "-m", "pytest", "-n", "2", "tests/postgres", "tests/redis"]
        return subprocess.run([*command, *args], cwd=ROOT, env=env, check=False).returncode
    except KeyboardInterrupt:
        return 130
    finally:
        docker.remove_run(run)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
