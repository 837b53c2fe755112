"""Per-test cost of running tests in separate processes, every way side by side in one run.

The same trivial tests run in process, isolated by worker_utils (zygote, pool
and spawn-per-test), under pytest-forked (``--forked``) and under
pytest-isolate (``--isolate``), and, with ``-n 0``, two lower bounds
(benchmarks/isolation_bounds.py: a fork of a started pytest session that
exits at once, and one that collects, runs and reports its one test); the
rounds alternate so that load on the machine hits every way alike. Overhead
per test is (time - in-process time) / tests, the median over the rounds, of
wall time and of CPU time (the runs' processes and all their children): on a
loaded machine the CPU figure is the steadier one. Each way runs without the
other ways' plugins, and with bytecode caching on (``PYTHONDONTWRITEBYTECODE``
removed), as on a developer's machine.

pytest-forked and pytest-isolate may not run on the newest pytest; give them
another interpreter that has them (and an older pytest) with ``--compare-python``.
Their overhead is then measured against an in-process run of that interpreter,
so that neither side pays for the other's pytest start-up.

    pip install -e '.[bench]'
    python benchmarks/isolation.py [--tests 200] [--rounds 3] [-n 0] [--compare-python PATH]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WAYS: dict[str, list[str]] = {
    "in process": [],
    "in process (compare)": [],
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
    # Lower bounds (benchmarks/isolation_bounds.py): forks of a started session.
    "bound: fork and exit": ["-p", "isolation_bounds"],
    "bound: child collects": ["-p", "isolation_bounds"],
}
_BOUNDS = {"bound: fork and exit": "exit", "bound: child collects": "collect"}
_NEEDS = {"pytest-forked": "pytest_forked", "pytest-isolate": "pytest_isolate"}
_COMPARED = {*_NEEDS, "in process (compare)"}


def write_tests(directory: Path, count: int) -> None:
    body = "".join(f"def test_{i}():\n    assert {i} == {i}\n\n" for i in range(count))
    (directory / "test_trivial.py").write_text(body)


def count_tests(directory: Path) -> int:
    return (directory / "test_trivial.py").read_text().count("def test_")


_OTHERS = {
    "in process (compare)": ["-p", "no:worker_utils", "-p", "no:isolate", "-p", "no:forked"],
    "pytest-forked": ["-p", "no:worker_utils", "-p", "no:isolate"],
    "pytest-isolate": ["-p", "no:worker_utils", "-p", "no:forked"],
    **{name: ["-p", "no:worker_utils", "-p", "no:forked", "-p", "no:isolate"] for name in _BOUNDS},
}


def run_once(directory: Path, python: str, name: str, workers: str) -> tuple[float, float]:
    """Run the tests one way; return its wall time and CPU time in seconds."""
    command = [python, "-m", "pytest", "-q", "-p", "no:randomly", "-p", "no:cacheprovider"]
    command += ["-n", workers, *_OTHERS.get(name, ["-p", "no:forked", "-p", "no:isolate"])]
    command += [*WAYS[name], "test_trivial.py"]
    env = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
    if name in _BOUNDS:
        here = str(Path(__file__).resolve().parent)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [here, env.get("PYTHONPATH")]))
        env["WU_BENCH_BOUND"] = _BOUNDS[name]
        env["WU_BENCH_TESTS"] = str(count_tests(directory))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    result = subprocess.run(command, cwd=directory, capture_output=True, text=True, env=env)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stdout[-2000:]}{result.stderr}")
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return elapsed, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tests", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("-n", dest="workers", default="0", help="xdist workers (default 0)")
    parser.add_argument(
        "--compare-python",
        default=sys.executable,
        help="the interpreter that runs pytest-forked and pytest-isolate (default: this one)",
    )
    parser.add_argument(
        "--ways",
        default=",".join(WAYS),
        help="comma-separated ways to run (the in-process baselines always run)",
    )
    options = parser.parse_args()
    chosen = {"in process", "in process (compare)", *options.ways.split(",")}
    pythons = {
        name: options.compare_python if name in _COMPARED else sys.executable for name in WAYS
    }
    ways = [
        name
        for name in WAYS
        if name in chosen
        and (name not in _NEEDS or _has_module(pythons[name], _NEEDS[name]))
        and (name not in _BOUNDS or options.workers == "0")
    ]
    missing = sorted(chosen & set(WAYS) - set(ways))
    if missing:
        print(f"not installed (pip install -e '.[bench]'): {', '.join(missing)}")
    walls: dict[str, list[float]] = {name: [] for name in ways}
    cpus: dict[str, list[float]] = {name: [] for name in ways}
    with tempfile.TemporaryDirectory(prefix="wu-bench-isolation-") as tmp:
        directory = Path(tmp)
        write_tests(directory, options.tests)
        for _ in range(options.rounds):
            for name in ways:
                wall, cpu = run_once(directory, pythons[name], name, options.workers)
                walls[name].append(wall)
                cpus[name].append(cpu)
    print(
        f"{options.tests} trivial tests, -n {options.workers}, {options.rounds} rounds, "
        f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}; medians"
    )
    print(f"  {'':<22} {'wall':>8} {'per test':>9} {'CPU':>8} {'per test':>9}")
    for name in ways:
        base = "in process (compare)" if name in _COMPARED else "in process"
        base_wall, base_cpu = statistics.median(walls[base]), statistics.median(cpus[base])
        wall, cpu = statistics.median(walls[name]), statistics.median(cpus[name])
        print(
            f"  {name:<22} {wall:7.2f}s {(wall - base_wall) / options.tests * 1000:6.1f} ms"
            f" {cpu:7.2f}s {(cpu - base_cpu) / options.tests * 1000:6.1f} ms"
        )


def _has_module(python: str, module: str) -> bool:
    code = f"import importlib.util, sys; sys.exit(importlib.util.find_spec({module!r}) is None)"
    return subprocess.run([python, "-c", code]).returncode == 0


if __name__ == "__main__":
    main()
