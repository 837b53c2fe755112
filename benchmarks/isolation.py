"""Per-test cost of running tests in separate processes, every way side by side in one run.

The same trivial tests run in process, isolated by worker_utils (zygote, pool
and spawn-per-test), under pytest-forked (``--forked``) and under
pytest-isolate (``--isolate``); the rounds alternate so that load on the
machine hits every way alike. Overhead per test is (wall time - in-process
wall time) / tests, the median over the rounds.

    pip install -e '.[bench]'
    python benchmarks/isolation.py [--tests 200] [--rounds 3] [-n 0]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WAYS: dict[str, list[str]] = {
    "in process": [],
    "worker_utils zygote": ["--worker-utils-isolate=test_trivial.py"],
    "worker_utils pool": [
        "--worker-utils-isolate=test_trivial.py",
        "--worker-utils-isolate-start=pool",
    ],
    "worker_utils spawn": [
        "--worker-utils-isolate=test_trivial.py",
        "--worker-utils-isolate-start=spawn",
    ],
    "pytest-forked": ["--forked"],
    "pytest-isolate": ["--isolate"],
}
_NEEDS = {"pytest-forked": "pytest_forked", "pytest-isolate": "pytest_isolate"}


def write_tests(directory: Path, count: int) -> None:
    body = "".join(f"def test_{i}():\n    assert {i} == {i}\n\n" for i in range(count))
    (directory / "test_trivial.py").write_text(body)


def run_once(directory: Path, args: list[str], workers: str) -> float:
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "-p", "no:cacheprovider"]
    command += ["-n", workers, *args, "test_trivial.py"]
    start = time.perf_counter()
    result = subprocess.run(command, cwd=directory, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stdout[-2000:]}{result.stderr}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tests", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("-n", dest="workers", default="0", help="xdist workers (default 0)")
    options = parser.parse_args()
    ways = {
        name: args
        for name, args in WAYS.items()
        if name not in _NEEDS or importlib.util.find_spec(_NEEDS[name]) is not None
    }
    missing = sorted(set(WAYS) - set(ways))
    if missing:
        print(f"not installed (pip install -e '.[bench]'): {', '.join(missing)}")
    times: dict[str, list[float]] = {name: [] for name in ways}
    with tempfile.TemporaryDirectory(prefix="wu-bench-isolation-") as tmp:
        directory = Path(tmp)
        write_tests(directory, options.tests)
        for _ in range(options.rounds):
            for name, args in ways.items():
                times[name].append(run_once(directory, args, options.workers))
    base = statistics.median(times["in process"])
    print(
        f"{options.tests} trivial tests, -n {options.workers}, {options.rounds} rounds, "
        f"{os.cpu_count()} cores; median wall time and overhead per test"
    )
    for name, values in times.items():
        wall = statistics.median(values)
        per_test = (wall - base) / options.tests * 1000
        print(f"  {name:<22} {wall:7.2f} s   {per_test:6.1f} ms/test")


if __name__ == "__main__":
    main()
