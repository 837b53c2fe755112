"""The docker backend side by side with an already-running server and one container per worker.

Run with ``python benchmarks/docker.py`` (``--help`` for sizes) against the engine
at ``DOCKER_HOST`` (default: the private one of ``tests/docker/engine.sh``), with
the local images that script builds unless ``--postgres-image``/``--redis-image``
say otherwise. One generated suite (each test writes a row and a key), run at
``-n 0``, ``-n 2`` and ``-n 4`` with each variant in turn, interleaved:

1. ``docker``: ``--worker-utils-servers=docker``, one container per server per run.
2. ``url``: the same image started once before all runs, passed as URLs: the
   floor, with the same per-test work.
3. ``per-worker``: a conftest that starts its own containers in each worker's
   session fixture and removes them at its end, as testcontainers or
   pytest-docker setups do under xdist (same image, same flags, same readiness).

For each it prints the wall time of the whole pytest process (best of the
repeats), the mean time of a test's call, and the containers created per run,
counted from the engine's create events. Then the container start-to-ready time
and the docker backend's overhead over ``url`` against the target (both servers'
start-to-ready plus 0.5 s).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

# Run as a script, this file's directory comes first on sys.path, and this
# file's name would hide the docker package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent.resolve()]

from worker_utils.servers import docker as backend  # noqa: E402

PRIVATE_SOCKET = "unix:///run/worker-utils-docker.sock"
LOCAL = {"postgres": "worker-utils-local/postgres:15", "redis": "worker-utils-local/redis:7"}

SUITE = """
import worker_utils

def _work(worker_postgres, worker_redis):
    # No run-wide template: with per-worker servers it would exist on one server only.
    worker_postgres.execute("CREATE TABLE item (id serial PRIMARY KEY, name text)")
    worker_postgres.execute("INSERT INTO item (name) VALUES ('x')")
    worker_redis.incr("hits")
"""

CONFTEST = """
import json, os, time, uuid
from pathlib import Path
import pytest

_calls = []

def pytest_runtest_logreport(report):
    if report.when == "call":
        _calls.append(report.duration)

def pytest_sessionfinish(session):
    if _calls:
        out = Path(os.environ["WU_BENCH_OUT"]) / f"{uuid.uuid4().hex}.json"
        out.write_text(json.dumps(_calls))
"""

# One container per worker, the way a session fixture of testcontainers or
# pytest-docker behaves under xdist: each worker starts, waits for and removes its own.
PER_WORKER = """

from worker_utils.servers import docker as _docker

@pytest.fixture(scope="session")
def _own_containers():
    run = uuid.uuid4().hex
    values = {}
    try:
        for kind in ("postgres", "redis"):
            image = os.environ[f"WU_BENCH_{kind.upper()}_IMAGE"]
            values[kind] = _docker.start_container(kind, image, run_uid=run)
        yield values
    finally:
        for value in values.values():
            _docker.remove_container(value)

@pytest.fixture(scope="session")
def worker_postgres_url(_own_containers):
    return _own_containers["postgres"]["url"]

@pytest.fixture(scope="session")
def worker_redis_server_url(_own_containers):
    return _own_containers["redis"]["url"]
"""


def write_suite(directory: Path, tests: int, per_worker: bool) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    body = SUITE + "".join(
        f"\ndef test_{i}(worker_postgres, worker_redis):\n"
        f"    _work(worker_postgres, worker_redis)\n"
        for i in range(tests)
    )
    (directory / "test_suite.py").write_text(body)
    (directory / "conftest.py").write_text(CONFTEST + (PER_WORKER if per_worker else ""))


def created_containers(client: Any, began: float, ended: float) -> int:
    """Containers with our creator label created between ``began`` and ``ended`` (epoch s)."""
    events = client.events(
        since=int(began),
        until=int(ended) + 1,
        decode=True,
        filters={"type": "container", "event": "create", "label": backend.CREATOR_LABEL},
    )
    return sum(1 for e in events if began * 1e9 <= e["timeNano"] <= ended * 1e9)


def run_suite(
    directory: Path, workers: int, env: dict[str, str], *extra: str
) -> tuple[float, list[float]]:
    out = Path(tempfile.mkdtemp(prefix="wu-bench-docker-out-"))
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "-p", "no:cacheprovider"]
    if workers:
        command += ["-n", str(workers)]
    started = time.perf_counter()
    done = subprocess.run(
        [*command, *extra],
        cwd=directory,
        env={**env, "WU_BENCH_OUT": str(out)},
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - started
    calls = [d for path in out.glob("*.json") for d in json.loads(path.read_text())]
    shutil.rmtree(out)
    if done.returncode != 0:
        raise SystemExit(f"{directory.name} -n {workers} failed:\n{done.stdout[-3000:]}")
    return wall, calls


def start_to_ready(images: dict[str, str], repeats: int) -> dict[str, float]:
    """Median seconds from ``start`` to a query answered, per server."""
    result = {}
    for kind, image in images.items():
        times = []
        for _ in range(repeats):
            began = time.perf_counter()
            value = backend.start_container(kind, image, run_uid=uuid.uuid4().hex)
            times.append(time.perf_counter() - began)
            backend.remove_container(value)
        result[kind] = statistics.median(times)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tests", type=int, default=24, help="Tests in the suite (24)")
    parser.add_argument("--repeats", type=int, default=2, help="Runs per variant, best kept (2)")
    parser.add_argument("--workers", default="0,2,4", help="Worker counts (0,2,4)")
    parser.add_argument("--postgres-image", default=LOCAL["postgres"])
    parser.add_argument("--redis-image", default=LOCAL["redis"])
    args = parser.parse_args()
    os.environ.setdefault("DOCKER_HOST", PRIVATE_SOCKET)
    images = {"postgres": args.postgres_image, "redis": args.redis_image}
    client = backend.engine()
    root = Path(tempfile.mkdtemp(prefix="wu-bench-docker-"))
    base_env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("WORKER_UTILS_", "PYTEST_XDIST", "PYTEST_CURRENT"))
    }
    base_env.update(
        WORKER_UTILS_POSTGRES_IMAGE=images["postgres"],
        WORKER_UTILS_REDIS_IMAGE=images["redis"],
        WU_BENCH_POSTGRES_IMAGE=images["postgres"],
        WU_BENCH_REDIS_IMAGE=images["redis"],
    )
    write_suite(root / "shared", args.tests, per_worker=False)
    write_suite(root / "per_worker", args.tests, per_worker=True)
    standing_run = uuid.uuid4().hex
    standing = {
        kind: backend.start_container(kind, image, run_uid=standing_run, max_connections=200)
        for kind, image in images.items()
    }
    variants: dict[str, tuple[Path, dict[str, str], tuple[str, ...]]] = {
        "docker": (root / "shared", {**base_env, "WORKER_UTILS_SERVERS": "docker"}, ()),
        "url": (
            root / "shared",
            {
                **base_env,
                "WORKER_UTILS_POSTGRES_URL": standing["postgres"]["url"],
                "WORKER_UTILS_REDIS_URL": standing["redis"]["url"],
            },
            (),
        ),
        "per-worker": (root / "per_worker", base_env, ()),
    }
    counts = [int(n) for n in args.workers.split(",")]
    results: dict[tuple[str, int], dict[str, Any]] = {}
    try:
        for _ in range(args.repeats):
            for workers in counts:
                for name, (directory, env, extra) in variants.items():
                    began = time.time()
                    wall, calls = run_suite(directory, workers, env, *extra)
                    created = created_containers(client, began, time.time())
                    entry = results.setdefault(
                        (name, workers), {"wall": float("inf"), "created": set(), "calls": []}
                    )
                    entry["wall"] = min(entry["wall"], wall)
                    entry["created"].add(created)
                    entry["calls"].extend(calls)
        ready = start_to_ready(images, repeats=3)
    finally:
        for value in standing.values():
            backend.remove_container(value)
        client.close()
        shutil.rmtree(root, ignore_errors=True)
    print(f"{args.tests} tests, best of {args.repeats}; images {images['postgres']}, "
          f"{images['redis']}")  # fmt: skip
    print(f"{'variant':<12}{'-n':>4}{'wall s':>9}{'per test ms':>13}{'containers/run':>16}")
    for (name, workers), entry in sorted(results.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        per_test = statistics.mean(entry["calls"]) * 1000 if entry["calls"] else float("nan")
        created = ",".join(str(c) for c in sorted(entry["created"]))
        print(f"{name:<12}{workers:>4}{entry['wall']:>9.2f}{per_test:>13.2f}{created:>16}")
    # Both servers' start-to-ready: at -n 0 one worker starts both in turn.
    budget = sum(ready.values()) + 0.5
    print(
        "container start-to-ready (median of 3): "
        + ", ".join(f"{kind} {seconds:.2f}s" for kind, seconds in ready.items())
    )
    for workers in counts:
        overhead = results[("docker", workers)]["wall"] - results[("url", workers)]["wall"]
        saved = results[("per-worker", workers)]["wall"] - results[("docker", workers)]["wall"]
        print(
            f"-n {workers}: docker over url {overhead:+.2f}s (target <= {budget:.2f}s: "
            f"{'met' if overhead <= budget else 'MISSED'}); "
            f"saved against per-worker containers {saved:+.2f}s"
        )


if __name__ == "__main__":
    main()
