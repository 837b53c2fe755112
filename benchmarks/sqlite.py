"""Per-test reset of a worker's SQLite file: transaction and restore against schema-per-test.

Run with ``python benchmarks/sqlite.py`` (``--help`` for sizes). A template of
10 tables and 1,000 seed rows is built once, as ``worker_sqlite_setup`` would be;
each iteration is one test: it writes a row, then the file is put back.

- transaction: the test writes on the fixture's connection inside a transaction;
  the reset rolls it back and checks that nothing was committed.
- restore: the test writes and commits on a connection of its own (an
  application's engine); the reset writes the template's pages back with the
  SQLite backup API.
- file copy: the same, by closing the connections and copying the template file.
- schema per test: what suites do without a template: delete the file, create
  the tables and insert the seed rows again.

Only the reset is timed, best of the rounds, which take turns so that a shared
machine's load falls on every variant alike.
"""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from worker_utils import sqlite

TARGETS = {"transaction": 0.2, "restore": 2.0}


def make_setup(tables: int, rows: int) -> Callable[[sqlite3.Connection], None]:
    per_table = rows // tables

    def setup(conn: sqlite3.Connection) -> None:
        for t in range(tables):
            parent = f", parent_id INTEGER REFERENCES t{t - 1} (id)" if t else ""
            conn.execute(
                f"CREATE TABLE t{t} (id INTEGER PRIMARY KEY, name TEXT NOT NULL,"
                f" amount INTEGER NOT NULL, created TEXT NOT NULL{parent})"
            )
            conn.execute(f"CREATE INDEX t{t}_name ON t{t} (name)")
            columns = "name, amount, created" + (", parent_id" if t else "")
            marks = "?, ?, ?" + (", ?" if t else "")
            conn.executemany(
                f"INSERT INTO t{t} ({columns}) VALUES ({marks})",
                [
                    (f"row {i} of table {t}", i * 7, "2024-01-01T00:00:00")
                    + ((i % per_table + 1,) if t else ())
                    for i in range(per_table)
                ],
            )

    return setup


def best_of(rounds: int, loops: int, variants: dict[str, Callable[[], float]]) -> dict[str, float]:
    """Milliseconds per reset of each variant: each call runs one test, returns its reset time."""
    best = dict.fromkeys(variants, float("inf"))
    for _ in range(rounds):
        for name, one_test in variants.items():
            total = sum(one_test() for _ in range(loops))
            best[name] = min(best[name], total / loops * 1000)
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tables", type=int, default=10)
    parser.add_argument("--rows", type=int, default=1000, help="seed rows in all tables")
    parser.add_argument("--loops", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    setup = make_setup(args.tables, args.rows)

    directory = Path(tempfile.mkdtemp(prefix="wu-bench-sqlite-"))
    try:
        template = sqlite.build_template(directory / "template.db", setup)
        database = sqlite.WorkerDatabase(directory / "worker.db", template)
        app = database.connect()  # an application's connection, left open between tests
        copy_db = directory / "copy.db"
        copy = {"conn": sqlite.connect(shutil.copyfile(template, copy_db))}
        scratch = directory / "scratch.db"

        def transaction() -> float:
            conn = database.begin()
            conn.execute("INSERT INTO t3 (name, amount, created) VALUES ('x', 1, 'now')")
            started = time.perf_counter()
            database.reset()
            return time.perf_counter() - started

        def restore() -> float:
            app.execute("INSERT INTO t3 (name, amount, created) VALUES ('x', 1, 'now')")
            app.commit()
            started = time.perf_counter()
            restored = database.reset()
            elapsed = time.perf_counter() - started
            assert restored
            return elapsed

        def file_copy() -> float:
            copy["conn"].execute("INSERT INTO t3 (name, amount, created) VALUES ('x', 1, 'now')")
            copy["conn"].commit()
            started = time.perf_counter()
            copy["conn"].close()
            for suffix in ("-wal", "-shm"):
                Path(f"{copy_db}{suffix}").unlink(missing_ok=True)
            shutil.copyfile(template, copy_db)
            copy["conn"] = sqlite.connect(copy_db)
            return time.perf_counter() - started

        def schema_per_test() -> float:
            started = time.perf_counter()
            for suffix in ("", "-wal", "-shm"):
                Path(f"{scratch}{suffix}").unlink(missing_ok=True)
            conn = sqlite.connect(scratch)
            setup(conn)
            conn.commit()
            elapsed = time.perf_counter() - started
            conn.close()
            return elapsed

        results = best_of(
            args.rounds,
            args.loops,
            {
                "transaction": transaction,
                "restore": restore,
                "file copy": file_copy,
                "schema per test": schema_per_test,
            },
        )
        with database.connect() as check:
            count = check.execute("SELECT count(*) FROM t3").fetchone()[0]
        check.close()
        assert count == args.rows // args.tables, "the resets did not restore the seed rows"
        app.close()
        copy["conn"].close()
        database.close()
    finally:
        shutil.rmtree(directory, ignore_errors=True)

    print(
        f"SQLite reset per test, {args.tables} tables, {args.rows} seed rows, "
        f"PRAGMAs {' '.join(f'{n}={v}' for n, v in sqlite.DEFAULT_PRAGMAS)}"
    )
    print(f"{'variant':<18}{'ms/test':>10}{'target':>10}")
    failed = False
    for name, ms in results.items():
        target = TARGETS.get(name)
        met = target is None or ms <= target
        failed = failed or not met
        shown = f"<= {target:g}" if target is not None else ""
        print(f"{name:<18}{ms:>10.3f}{shown:>10}{'' if met else '  MISSED'}")
    base = results["schema per test"]
    print(
        f"schema per test is {base / results['transaction']:.0f}x the transaction reset "
        f"and {base / results['restore']:.0f}x the restore"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
