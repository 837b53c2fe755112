"""Per-test cost of worker_utils' PostgreSQL isolation, side by side with its alternatives.

Usage: ``python benchmarks/postgres.py [--url URL] [--rounds 5] [--tests 300] [--parts 0,1,2]``

Part 1 runs the same small test (insert a row, count the rows) under each
variant, in a new random order each round, and reports the median time per
test (setup + call + teardown, from pytest's own reports) and its overhead over
a baseline that shares one connection and isolates nothing:

- ``baseline``: one session-scoped psycopg connection, no cleanup, the test's
  work never committed (the floor for ``transaction``);
- ``baseline+commit``: the same, each test committing (the floor for the modes
  whose tests commit: a commit waits for the WAL flush);
- ``baseline+fixture``: the baseline through a function-scoped fixture that
  only yields it: the part of any fixture's overhead that is pytest's own;
- ``transaction``, ``delete``, ``truncate``: the ``worker_postgres`` fixture
  with each reset mode (the delete and truncate tests commit);
- ``pytest-postgresql``: its ``postgresql`` fixture (a database per test, made
  from a template) on the same server.

It also reports the first test's setup in each variant: the per-worker session
setup (schema, ownership record, connections) beyond the baseline's connect.

Part 0 times the isolation operations alone, without pytest: the
transaction-mode BEGIN/ROLLBACK of the shared connection, and the delete and
truncate resets of a schema with two tables linked by a foreign key, each
after inserting a row into both (medians of 300).

Part 2 times 2,000-test suites at ``-n 0`` and ``-n 2``, alternating, and
reports the medians and their ratio: one with no database (the floor that
xdist itself sets), and two on ``worker_postgres`` with light and heavier tests.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Both conftests record each report of the per-test runs.
TIMINGS = """
import json, os

_OUT = os.environ.get("WU_BENCH_OUT")


if _OUT:  # the per-test timings; the suite timings leave it out (xdist runs it twice)
    def pytest_runtest_logreport(report):
        with open(_OUT, "a") as out:
            out.write(json.dumps([report.nodeid, report.when, report.duration]) + "\\n")
"""

CONFTEST = (
    TIMINGS
    + """
import psycopg
import pytest


@pytest.fixture(scope="session")
def worker_postgres_setup():
    def setup(conn):
        conn.execute("CREATE TABLE item (id serial PRIMARY KEY, name text NOT NULL)")
        conn.commit()
    return setup


@pytest.fixture(scope="session")
def plain():
    with psycopg.connect(os.environ["WU_BENCH_URL"], autocommit=True) as conn:
        # A schema per worker by hand, so the baseline can run under xdist too.
        schema = "wu_bench_baseline_" + os.environ.get("PYTEST_XDIST_WORKER", "master")
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        conn.execute(f"CREATE SCHEMA {schema}")
        conn.execute(f"SET search_path = {schema}")
        conn.execute("CREATE TABLE item (id serial PRIMARY KEY, name text NOT NULL)")
        conn.autocommit = False
        yield conn
        conn.rollback()
        conn.autocommit = True
        conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture
def plain_fixture(plain):  # what a function-scoped fixture alone costs
    yield plain
"""
)

PPG_CONFTEST = (
    TIMINGS
    + """
import pytest
from pytest_postgresql import factories


def load(host, port, user, dbname, password, **_):
    import psycopg
    with psycopg.connect(host=host, port=port, user=user, dbname=dbname) as conn:
        conn.execute("CREATE TABLE item (id serial PRIMARY KEY, name text NOT NULL)")

postgresql_noproc = factories.postgresql_noproc(
    host="127.0.0.1", port=5432, user="postgres", dbname="wu_bench_ppg", load=[load]
)
postgresql = factories.postgresql("postgresql_noproc")
"""
)

BODY = {
    "baseline": ("plain", "", False),
    "baseline+commit": ("plain", "", True),
    "baseline+fixture": ("plain_fixture", "", False),
    "transaction": ("worker_postgres", "", False),
    "delete": ("worker_postgres", "@pytest.mark.worker_postgres(reset='delete')\n", True),
    "truncate": ("worker_postgres", "@pytest.mark.worker_postgres(reset='truncate')\n", True),
    "pytest-postgresql": ("postgresql", "", True),
}


def make_test_file(variant: str, count: int, statements: int) -> str:
    if variant == "empty":  # xdist's own per-test cost, with no database at all
        return (
            f"import pytest\n\n@pytest.mark.parametrize('n', range({count}))\n"
            "def test_item(n):\n    pass\n"
        )
    fixture, marker, commit = BODY[variant]
    lines = ["import pytest\n\n"]
    lines.append(f"{marker}@pytest.mark.parametrize('n', range({count}))\n")
    lines.append(f"def test_item({fixture}, n):\n")
    for _ in range(statements):
        lines.append(f"    {fixture}.execute(\"INSERT INTO item (name) VALUES ('x')\")\n")
        lines.append(f'    {fixture}.execute("SELECT count(*) FROM item").fetchone()\n')
    if commit:
        lines.append(f"    {fixture}.commit()\n")
    return "".join(lines)


def run_variant(
    root: Path,
    variant: str,
    count: int,
    url: str,
    *args: str,
    statements: int = 1,
    timings: bool = True,
) -> tuple[list[float], float, float]:
    """Run one variant; return per-test times, the first test's setup and the wall time.

    With ``timings`` false only the wall time is measured: the hook that records
    each report runs in the controller too under xdist, a cost of the benchmark
    rather than of the suite.
    """
    directory = root / f"{variant}-{statements}"
    directory.mkdir(exist_ok=True)
    conftest = PPG_CONFTEST if variant == "pytest-postgresql" else CONFTEST
    (directory / "conftest.py").write_text(conftest)
    (directory / "test_bench.py").write_text(make_test_file(variant, count, statements))
    out = directory / "reports.jsonl"
    out.unlink(missing_ok=True)
    env = {**os.environ, "WU_BENCH_URL": url}
    if timings:
        env["WU_BENCH_OUT"] = str(out)
    env["WORKER_UTILS_POSTGRES_URL"] = url
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "-p", "no:cacheprovider",
         "-W", "ignore", *args],
        cwd=directory, env=env, capture_output=True, text=True,
    )  # fmt: skip
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{variant} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    per_test: dict[str, float] = {}
    first_setup = 0.0
    for line in out.read_text().splitlines() if timings else ():
        nodeid, when, duration = json.loads(line)
        per_test[nodeid] = per_test.get(nodeid, 0.0) + duration
        if when == "setup":
            first_setup = max(first_setup, duration)
    return list(per_test.values()), first_setup, wall


def micro(url: str, repeat: int = 300) -> None:
    """Part 0: the isolation operations alone, in this process."""
    from worker_utils import postgres

    namespace = postgres.WorkerNamespace(
        url, postgres.worker_postgres_name("0bench0000", "gw0", "wu_bench"), "0bench0000"
    )
    namespace.create()
    shared = postgres.SharedConnection(namespace)
    conn = namespace.connect(autocommit=True)
    try:
        conn.execute("CREATE TABLE parent (id serial PRIMARY KEY, v text)")
        conn.execute("CREATE TABLE child (id serial PRIMARY KEY, p int REFERENCES parent)")

        def timed(action: str) -> float:
            samples = []
            for _ in range(repeat):
                if action == "transaction":
                    start = time.perf_counter()
                    shared.begin(transaction=True)
                    shared.end(transaction=True)
                else:
                    conn.execute("INSERT INTO parent (v) VALUES ('a')")
                    conn.execute("INSERT INTO child (p) SELECT max(id) FROM parent")
                    start = time.perf_counter()
                    namespace.reset(action)
                samples.append(time.perf_counter() - start)
            return statistics.median(samples)

        print(f"Isolation alone, median of {repeat}:")
        for action in ("transaction", "delete", "truncate"):
            print(f"  {action:<12}{timed(action) * 1000:>8.3f}ms")
    finally:
        conn.close()
        shared.close()
        namespace.drop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tests", type=int, default=300)
    parser.add_argument("--ppg-tests", type=int, default=20)
    parser.add_argument("--suite", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0, help="Seed of the shuffled orders")
    parser.add_argument(
        "--parts", default="0,1,2", help="Which parts to run, comma-separated (default: 0,1,2)"
    )
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    if "0" in parts:
        micro(args.url)
    with tempfile.TemporaryDirectory(prefix="wu-bench-pg-") as tmp:
        root = Path(tmp)
        if "1" in parts:
            per_test(root, args)
        if "2" in parts:
            suites(root, args)


def per_test(root: Path, args: argparse.Namespace) -> None:
    """Part 1: per-test time of each variant at -n 0, in a new random order each round.

    Overheads are paired within a round (the variant's median minus its
    baseline's median in the same round), then the median over rounds is
    reported: the machine's speed drifts from minute to minute, and a shuffled
    order keeps one variant's after-effects (pytest-postgresql writes whole
    databases) from always falling on the same neighbour.
    """
    shuffle = random.Random(args.seed).shuffle
    rounds: list[dict[str, float]] = []
    setups: list[dict[str, float]] = []
    for _ in range(args.rounds):
        order = list(BODY)
        shuffle(order)
        medians: dict[str, float] = {}
        firsts: dict[str, float] = {}
        for variant in order:
            count = args.ppg_tests if variant == "pytest-postgresql" else args.tests
            samples, first_setup, _ = run_variant(root, variant, count, args.url, "-n", "0")
            medians[variant] = statistics.median(samples)
            firsts[variant] = first_setup
        rounds.append(medians)
        setups.append(firsts)

    def paired(variant: str, base: str, data: list[dict[str, float]]) -> float:
        return statistics.median(r[variant] - r[base] for r in data)

    print(f"Per-test time, medians of {args.rounds} rounds in shuffled order (-n 0):")
    print(f"{'variant':<20}{'per test':>12}{'overhead':>12}{'first setup':>14}")
    for variant in BODY:
        base = "baseline+commit" if BODY[variant][2] else "baseline"
        median = statistics.median(r[variant] for r in rounds)
        overhead = paired(variant, base, rounds)
        setup = paired(variant, "baseline", setups)
        print(
            f"{variant:<20}{median * 1000:>10.3f}ms{overhead * 1000:>+10.3f}ms"
            f"{setup * 1000:>+12.1f}ms"
        )
    ours = paired("delete", "baseline+commit", rounds)
    theirs = paired("pytest-postgresql", "baseline+commit", rounds)
    print(f"pytest-postgresql overhead / delete-mode overhead: {theirs / max(ours, 1e-6):.0f}x")


def suites(root: Path, args: argparse.Namespace) -> None:
    """Part 2: wall time of 2,000-test suites at -n 0 and -n 2, alternating."""
    # On two cores xdist's controller handles every report itself: for tests this
    # small it costs more than the second worker saves, database or not.
    kinds = (
        ("no database (xdist's own cost)", "empty", 0),
        ("baseline (no isolation), 2 statements", "baseline", 1),
        ("worker_postgres, 2 statements a test", "transaction", 1),
        ("worker_postgres, 40 statements a test", "transaction", 20),
    )
    print(f"\n{args.suite}-test suites, wall time (median of 2, alternating):")
    print(f"{'suite':<40}{'-n 0':>8}{'-n 2':>8}{'ratio':>8}")
    for label, variant, statements in kinds:
        walls: dict[str, list[float]] = {"0": [], "2": []}
        for _ in range(2):
            for workers in walls:
                _, _, wall = run_variant(
                    root, variant, args.suite, args.url, "-n", workers,
                    statements=statements, timings=False,
                )  # fmt: skip
                walls[workers].append(wall)
        n0, n2 = statistics.median(walls["0"]), statistics.median(walls["2"])
        print(f"{label:<40}{n0:>7.2f}s{n2:>7.2f}s{n2 / n0:>7.2f}x")


if __name__ == "__main__":
    main()
