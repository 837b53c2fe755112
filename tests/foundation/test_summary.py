"""The summary at the end of a run: nothing on a plain run, a line per worker, or a table."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.postgres.conftest import schemas
from worker_utils._report import WorkerReport, summary_lines

ROOT = Path(__file__).resolve().parent.parent.parent

RUN = "/srv/runs/run-3f2a"  # text in the reports, never a path in use


def _reports() -> dict[str, dict[str, Any]]:
    gw0, gw1 = WorkerReport("gw0"), WorkerReport("gw1")
    gw0.note("tmp", f"{RUN}/workers/gw0")
    for port in (20001, 20002, 20003, 20004, 20009):
        gw0.note("ports", port)
    gw0.note("postgres", "test_worker_3f2a_gw0")
    gw0.note("postgres setup", "per worker: it holds function answer")
    gw0.note("sqlite", f"{RUN}/workers/gw0/sqlite.db")
    gw0.note_server("postgres", "postgresql://app:secret@db/test", "given by --x")
    gw1.note("ports", 20005)
    gw1.note("redis", "db 2")
    gw1.note_server("redis", "redis://:pw@cache/0", "embedded")
    for report in (gw0, gw1):
        name = report.worker
        report.plan("tmp", f"{RUN}/workers/{name}")
        report.plan("ports", "range 20000-29999")
        report.plan("postgres", f"test_worker_3f2a_{name}")
        report.plan("sqlite", f"{RUN}/workers/{name}/sqlite.db")
    # gw10 sorts after gw2, and a worker that got no test still has a row.
    idle = WorkerReport("gw10")
    idle.plan("tmp", f"{RUN}/workers/gw10")
    return {r.worker: r.as_dict() for r in (idle, gw1, gw0)}


def test_the_table_has_a_row_per_worker_with_every_resource_it_gets() -> None:
    assert list(summary_lines(_reports(), table=True)) == [
        f"worker_utils: 3 workers, run directory {RUN}",
        "  worker  temp dir      ports                      postgres              redis  sqlite",
        "  gw0     workers/gw0   5 between 20001 and 20009  test_worker_3f2a_gw0  -      "
        "<temp dir>/sqlite.db",
        "  gw1     workers/gw1   20005                      test_worker_3f2a_gw1  db 2   "
        "<temp dir>/sqlite.db",
        "  gw10    workers/gw10  -                          -                     -      -",
        "  gw0 postgres setup: per worker: it holds function answer",
        "worker_utils: postgres server postgresql://app:***@db/test (given by --x)",
        "worker_utils: redis server redis://:***@cache/0 (embedded)",
    ]


def test_the_short_form_has_a_line_per_worker_with_what_its_tests_used() -> None:
    assert list(summary_lines(_reports(), table=False)) == [
        f"worker_utils: gw0: temp dir {RUN}/workers/gw0; ports 5 between 20001 and 20009; "
        "postgres test_worker_3f2a_gw0; sqlite <temp dir>/sqlite.db; "
        "postgres setup per worker: it holds function answer",
        "worker_utils: gw1: ports 20005; redis db 2",
        "worker_utils: gw10: no resources",
        "worker_utils: postgres server postgresql://app:***@db/test (given by --x)",
        "worker_utils: redis server redis://:***@cache/0 (embedded)",
    ]


def test_there_is_no_summary_when_no_test_used_a_resource() -> None:
    idle = WorkerReport("gw0")
    idle.plan("tmp", f"{RUN}/workers/gw0")
    reports = {"gw0": idle.as_dict()}
    assert list(summary_lines(reports, table=True)) == []
    assert list(summary_lines(reports, table=False)) == []


def test_the_summary_says_how_many_workers_waited_and_how_long() -> None:
    reports = {}
    for worker, waited in (("gw0", 0.0), ("gw1", 0.25), ("gw2", 1.5), ("gw3", 0.0)):
        report = WorkerReport(worker)
        report.note("redis", "db 1" if not waited else "prefix wu:x:gw1: in db 15")
        if waited:
            report.note_wait("redis", waited, "a free database")
        reports[worker] = report.as_dict()
    assert list(summary_lines(reports, table=False))[-1] == (
        "worker_utils: redis: 2 of 4 workers waited for a free database: "
        "1.50s at most, 1.75s in all"
    )


PORTS = """
def test_ports(worker_port, worker_tmp_path):
    worker_port(); worker_port()
"""


def test_a_plain_run_prints_nothing_and_a_verbose_run_a_line_per_worker(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(PORTS)
    result = pytester.runpytest("-p", "no:xdist")
    result.assert_outcomes(passed=1)
    result.stdout.no_fnmatch_line("worker_utils*")
    result = pytester.runpytest("-p", "no:xdist", "-v")
    result.stdout.fnmatch_lines(["worker_utils: master: temp dir */workers/master; ports *, *"])


def test_the_setting_asks_for_a_summary_or_turns_it_off(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(PORTS)
    result = pytester.runpytest("-p", "no:xdist", "--worker-utils-summary=short")
    result.stdout.fnmatch_lines(["worker_utils: master: temp dir */workers/master; ports *, *"])
    result = pytester.runpytest("-p", "no:xdist", "-v", "-o", "worker_utils_summary=off")
    result.assert_outcomes(passed=1)
    result.stdout.no_fnmatch_line("worker_utils*")


def test_a_bad_summary_form_stops_pytest_naming_the_setting(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WORKER_UTILS_SUMMARY", "loud")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "ERROR: worker_utils_summary (from WORKER_UTILS_SUMMARY): found 'loud'; "
            "expected auto, off, short or table"
        ]
    )


EVERYTHING = """
import pytest

@pytest.mark.parametrize("n", range(4))
def test_postgres(worker_postgres, n):
    worker_postgres.execute("SELECT 1")

def test_one_port(worker_port, worker_sqlite):
    worker_port()
"""


def test_the_table_names_every_workers_resources_whichever_tests_it_ran(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    prefix = f"wu_sum_{uuid.uuid4().hex[:8]}"
    # Trust authentication ignores the password: it is there to be masked.
    monkeypatch.setenv("WORKER_UTILS_POSTGRES_URL", "postgresql://postgres:s3cret@127.0.0.1/test")
    monkeypatch.setenv("WORKER_UTILS_POSTGRES_PREFIX", prefix)
    pytester.makepyfile(EVERYTHING)
    result = pytester.runpytest(
        "-n", "2", "-p", "no:randomly", "--worker-utils-port-range=21000-21099",
        "--worker-utils-summary=table",
    )  # fmt: skip
    result.assert_outcomes(passed=5)
    result.stdout.fnmatch_lines(
        [
            "worker_utils: 2 workers, run directory */run-*",
            "  worker  temp dir     ports*postgres*sqlite",
            f"  gw0     workers/gw0  *  {prefix}_*_gw0  <temp dir>/sqlite.db",
            f"  gw1     workers/gw1  *  {prefix}_*_gw1  <temp dir>/sqlite.db",
            "worker_utils: postgres server postgresql://postgres:***@127.0.0.1/test "
            "(given by WORKER_UTILS_POSTGRES_URL)",
        ]
    )
    rows = [line for line in result.stdout.lines if line.startswith("  gw")]
    # One worker leased a port and opened its SQLite file; the other shows what it gets.
    assert sum("range 21000-21099" in row for row in rows) == 1
    assert sum("<temp dir>/sqlite.db" in row for row in rows) == 2
    assert schemas(prefix) == []


def test_the_demo_ends_with_the_table_and_no_line_per_test(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("WORKER_UTILS_POSTGRES_URL", "WORKER_UTILS_REDIS_URL"):
        monkeypatch.delenv(name, raising=False)
    result = pytester.runpytest(
        str(ROOT / "examples"), "-n", "2", "-p", "no:randomly", "--worker-utils-summary=table"
    )
    result.assert_outcomes(passed=36)
    result.stdout.fnmatch_lines(
        [
            "worker_utils: 2 workers, run directory */run-*",
            "  worker  temp dir     ports * postgres * redis",
            "  gw0     workers/gw0  *  test_worker_*_gw0  db *",
            "  gw1     workers/gw1  *  test_worker_*_gw1  db *",
            "worker_utils: postgres server postgresql://*@127.0.0.1:*/postgres (embedded)",
            "worker_utils: redis server redis://127.0.0.1:*/0 (embedded)",
            "*= 36 passed in *",
        ]
    )
    result.stdout.no_fnmatch_line("*PASSED*")
