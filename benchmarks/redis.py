"""Per-test cost of Redis isolation: worker_utils against no cleanup and pytest-redis's ``redisdb``.

Run with ``python benchmarks/redis.py`` (``--help`` for sizes). It starts its own
throwaway ``redis-server`` on a leased port, because pytest-redis's ``redisdb``
sends ``FLUSHALL``, which must never reach a server that others use, and stops it
at the end. Every variant runs against that one server, in one invocation:

1. In-process, one iteration = what one test's fixtures do: make a client, write
   one key, clean up. Printed as milliseconds per test above a no-cleanup baseline.
2. Prefix mode: ``SCAN`` + ``UNLINK`` of a worker's prefix with 0 to 100,000
   foreign keys in the same database; the cost follows the database size.
3. pytest level: one generated suite of N tests, run with each fixture in turn
   (interleaved, best of the repeats), timed by a hook around the test loop.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

# Run as a script, this file's directory comes first on sys.path, and this
# file's name would hide the redis package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent.resolve()]

import redis  # noqa: E402

from worker_utils import ports  # noqa: E402
from worker_utils.redis import delete_prefix, lease_redis, parse_redis_url  # noqa: E402
from worker_utils.servers._process import ProcessId, wait_for_port  # noqa: E402


def start_server() -> tuple[subprocess.Popen[bytes], int]:
    lease = ports.lease_port()
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    process = subprocess.Popen(
        [binary, "--port", str(lease.port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    wait_for_port("127.0.0.1", lease.port, 10, process=ProcessId.of(process.pid))
    lease.release()
    return process, lease.port


def per_iteration(loops: int, body: Callable[[int], object]) -> float:
    """Milliseconds per call of ``body``, best of three rounds."""
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        for i in range(loops):
            body(i)
        best = min(best, (time.perf_counter() - started) / loops * 1000)
    return best


def interleaved(
    loops: int, bodies: dict[str, Callable[[int], object]], rounds: int = 5
) -> dict[str, float]:
    """Milliseconds per call of each body, best of ``rounds`` rounds that take turns.

    Taking turns spreads the load of a shared machine over every variant alike.
    """
    best = dict.fromkeys(bodies, float("inf"))
    for _ in range(rounds):
        for name, body in bodies.items():
            started = time.perf_counter()
            for i in range(loops):
                body(i)
            best[name] = min(best[name], (time.perf_counter() - started) / loops * 1000)
    return best


def in_process(port: int, loops: int) -> dict[str, float]:
    url = f"redis://127.0.0.1:{port}/0"
    lease = lease_redis(parse_redis_url(url), env={})
    plain = redis.Redis(port=port, db=9)
    try:

        def baseline(i: int) -> None:
            plain.set("k", i)

        def index_mode(i: int) -> None:
            lease.client().set("k", i)
            lease.clean()

        def index_mode_async(i: int) -> None:
            lease.client().set("k", i)
            lease._janitor.flushdb(asynchronous=True)

        def redisdb(i: int) -> None:
            client = redis.Redis("127.0.0.1", port, 0)  # what redisdb does per test
            client.set("k", i)
            client.flushall()
            client.close()

        results = interleaved(
            loops,
            {
                "no cleanup (baseline)": baseline,
                "worker_redis, FLUSHDB": index_mode,
                "worker_redis, FLUSHDB ASYNC": index_mode_async,
                "pytest-redis redisdb (client + FLUSHALL)": redisdb,
            },
        )
    finally:
        plain.close()
        lease.release()
    return results


def prefix_mode(port: int, loops: int, foreign_counts: list[int]) -> dict[int, float]:
    client = redis.Redis(port=port, db=5)
    results = {}
    prefix = "wu:bench:gw0:"

    def body(i: int) -> None:
        client.set(prefix + "k", i)
        delete_prefix(client, prefix)

    try:
        for foreign in foreign_counts:
            client.flushdb()  # db 5 of our own throwaway server
            pipe = client.pipeline(transaction=False)
            for n in range(foreign):
                pipe.set(f"someone:else:{n}", 1)
            pipe.execute()
            baseline = per_iteration(loops, lambda i: client.set(prefix + "k", i))
            results[foreign] = per_iteration(max(20, loops // (1 + foreign // 1000)), body)
            results[foreign] -= baseline
        client.flushdb()
    finally:
        client.close()
    return results


CONFTEST = """
import json, os, time
import pytest
import redis
from pytest_redis import factories

redisdb_on_bench_server = factories.redisdb("redis_noproc")


@pytest.fixture(scope="session")
def _plain():
    client = redis.Redis(port=int(os.environ["BENCH_PORT"]), db=9)
    yield client
    client.close()


@pytest.fixture
def no_cleanup(_plain):
    return _plain


@pytest.fixture
def client(request):
    return request.getfixturevalue(os.environ["BENCH_FIXTURE"])


@pytest.hookimpl(wrapper=True)
def pytest_runtestloop(session):
    started = time.perf_counter()
    try:
        return (yield)
    finally:
        with open(os.environ["BENCH_OUT"], "w") as out:
            json.dump({"seconds": time.perf_counter() - started}, out)
"""

TESTS = """
import pytest

@pytest.mark.parametrize("n", range({n}))
def test_writes_a_key(client, n):
    client.set("k", n)
"""


def pytest_level(port: int, tests: int, repeats: int) -> dict[str, float]:
    fixtures = {
        "no cleanup (baseline)": "no_cleanup",
        "worker_redis": "worker_redis",
        "pytest-redis redisdb": "redisdb_on_bench_server",
    }
    seconds: dict[str, list[float]] = {name: [] for name in fixtures}
    with tempfile.TemporaryDirectory() as tmp:
        suite = Path(tmp)
        (suite / "conftest.py").write_text(CONFTEST)
        (suite / "test_bench.py").write_text(textwrap.dedent(TESTS.format(n=tests)))
        out = suite / "out.json"
        for _ in range(repeats):
            for name, fixture in fixtures.items():
                env = {
                    **os.environ,
                    "BENCH_FIXTURE": fixture,
                    "BENCH_PORT": str(port),
                    "BENCH_OUT": str(out),
                    "WORKER_UTILS_REDIS_URL": f"redis://127.0.0.1:{port}/0",
                }
                subprocess.run(
                    [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "-p",
                     "no:cacheprovider", "-p", "no:xdist", f"--redis-port={port}",
                     "--redis-host=127.0.0.1", str(suite)],
                    env=env, check=True, capture_output=True, cwd=suite,
                )  # fmt: skip
                seconds[name].append(json.loads(out.read_text())["seconds"])
    return {name: min(values) / tests * 1000 for name, values in seconds.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loops", type=int, default=1000, help="iterations in-process")
    parser.add_argument("--tests", type=int, default=1000, help="tests in the pytest suite")
    parser.add_argument("--repeats", type=int, default=5, help="runs of each pytest variant")
    parser.add_argument(
        "--foreign", default="0,1000,10000,100000", help="foreign key counts for prefix mode"
    )
    args = parser.parse_args()
    process, port = start_server()
    try:
        print(f"redis-server on port {port}; ms per test, lower is better\n")
        print(f"In-process ({args.loops} iterations: client, one SET, cleanup):")
        results = in_process(port, args.loops)
        base = results["no cleanup (baseline)"]
        for name, ms in results.items():
            print(f"  {name:45} {ms:7.4f} ms   overhead {ms - base:+.4f} ms")
        print("\nPrefix mode (SCAN MATCH + UNLINK of 1 own key), overhead by foreign keys:")
        for foreign, ms in prefix_mode(
            port, 500, [int(f) for f in args.foreign.split(",")]
        ).items():
            print(f"  {foreign:>7} foreign keys in the database   {ms:8.3f} ms")
        print(f"\npytest level ({args.tests} tests, best of {args.repeats} runs, -n 0):")
        levels = pytest_level(port, args.tests, args.repeats)
        base = levels["no cleanup (baseline)"]
        for name, ms in levels.items():
            print(f"  {name:45} {ms:7.4f} ms   overhead {ms - base:+.4f} ms")
        ours = levels["worker_redis"] - base
        theirs = levels["pytest-redis redisdb"] - base
        if ours > 0:
            print(f"\n  redisdb overhead / worker_redis overhead: {theirs / ours:.1f}x")
    finally:
        process.terminate()
        process.wait(timeout=10)


if __name__ == "__main__":
    main()
