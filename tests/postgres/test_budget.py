"""The connection budget: one connection of worker_utils' own per worker, and a full server.

Tests that fill a server fill a private one with room for ten connections,
never the machine's.
"""

from __future__ import annotations

import os
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.postgres.conftest import URL, Example, execute
from worker_utils import postgres
from worker_utils._util import wait_until
from worker_utils.postgres._budget import ServerUse, run_label
from worker_utils.postgres._dsn import SlotWaits, connect
from worker_utils.postgres._names import parse_record
from worker_utils.servers.postgres import PostgresServer

Records = Callable[[], list[dict[str, Any]]]
JOB = os.getpid()  # keeps the run ids of this test apart from a concurrent run of the suite
FIXES = (
    "run fewer workers (-n) or concurrent runs, raise max_connections, or put a pooler such "
    "as PgBouncer in session mode in front of the server"
)


@pytest.fixture(scope="module")
def small_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A private server with ten connection slots, three of them reserved, and a role ``wu_app``
    without the reserved ones."""
    saved: list[dict[str, Any]] = []
    try:
        record = PostgresServer(max_connections=10).start(
            tmp_path_factory.mktemp("small"), lambda value: saved.append(dict(value))
        )
        execute("CREATE ROLE wu_app LOGIN", record["url"])
        yield record["url"]
    finally:
        if saved:
            PostgresServer.stop(saved[-1])


def idle(url: str) -> None:
    """Wait until the server has no client connection but the one asking (ended ones linger)."""
    with psycopg.connect(url) as conn:

        def alone() -> bool | None:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'"
            ).fetchone()
            return row == (1,) or None

        assert wait_until(alone, timeout=10), "connections of an earlier test are still open"


def occupy(url: str, **kwargs: Any) -> psycopg.Connection[Any]:
    """A connection that holds a slot, once the slot of a connection closed just before is
    free again (a closed connection's server process takes a moment to exit)."""

    def attempt() -> psycopg.Connection[Any] | None:
        try:
            return psycopg.connect(url, **kwargs)
        except psycopg.OperationalError as exc:
            if "too many clients" not in str(exc):
                raise
            return None

    conn = wait_until(attempt, timeout=10)
    assert conn is not None, "a slot of an earlier connection was not freed within 10 s"
    return conn


@pytest.mark.parametrize(("mode", "server"), [("schema", "url"), ("database", "embedded")])
def test_worker_utils_holds_one_named_connection_per_worker_beside_the_tests_own(
    example: Example,
    record_dir: Path,
    read_records: Records,
    monkeypatch: pytest.MonkeyPatch,
    mode: str,
    server: str,
) -> None:
    if server == "embedded":
        monkeypatch.delenv(postgres.URL_VAR)
    example.copy("footprint", ini=f"worker_utils_postgres_mode = {mode}\n")
    result = example.pytester.runpytest_subprocess("-n", "2", "-p", "no:randomly")
    result.assert_outcomes(passed=4)
    records = read_records()
    assert {record["worker"] for record in records} == {"gw0", "gw1"}
    for record in records:
        # Every connection the worker process holds to the server, found by its sockets:
        # the test's two, and one of worker_utils' own that names the worker and the run.
        theirs = [name for pid, name in record["held"] if pid not in record["own"]]
        assert theirs == [f"{record['namespace']} (worker_utils)"], record
        assert len(record["held"]) == 3, record


def test_a_refused_connection_fails_its_test_in_one_line_naming_the_limit_and_the_fleet(
    example: Example, small_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(postgres.URL_VAR, small_server)
    example.copy("exhaust", ini="worker_utils_postgres_app_connections = 3\n")
    example.pytester.makeconftest(EVERY_WORKER_CONNECTED)
    idle(small_server)
    # A worker of another run, and a client of no run.
    with (
        occupy(small_server, application_name="wu_next_door_gw3"),
        occupy(small_server),
    ):
        result = example.pytester.runpytest_subprocess(
            "-n",
            "2",
            "-p",
            "no:randomly",
            "-p",
            "no:django",
            f"--testrunuid=budget-{JOB}",
            "--junitxml=junit.xml",
        )
    result.assert_outcomes(failed=4)
    # Before any test: the run needs 2 x (1 + 3) slots and 10 - 3 reserved - 2 are free.
    result.stdout.fnmatch_lines(
        [
            "worker_utils: this run needs about 8 PostgreSQL connections (2 worker(s) x (1 of "
            "worker_utils + 3 of worker_utils_postgres_app_connections)) and the server has 5 "
            "free (max_connections 10, 3 reserved, 2 in use); run fewer workers (-n), raise "
            "max_connections, or put a pooler such as PgBouncer in session mode in front of "
            "the server"
        ]
    )
    line = (
        "worker_postgres: the server refused a connection of this test for lack of slots ({}); "
        f"the server holds * of its 10 connections (3 reserved): this run "
        f"{example.prefix}_budget_{JOB} *, run wu_next_door 1, other 1; {FIXES}"
    )
    full = line.format("sorry, too many clients already")
    reserved = line.format(
        "remaining connection slots are reserved for non-replication superuser connections"
    )
    junit = ET.parse(example.pytester.path / "junit.xml").getroot()
    messages = {
        case.get("name"): failure.get("message")
        for case in junit.iter("testcase")
        for failure in case.iter("failure")
    }
    assert sorted(messages) == [
        "test_a_role_without_the_reserved_slots",
        "test_django",
        "test_psycopg",
        "test_sqlalchemy",
    ]
    for name, message in messages.items():
        expected = reserved if name == "test_a_role_without_the_reserved_slots" else full
        assert fnmatchcase(message or "", f"Failed: {expected}"), (name, message)
        result.stdout.fnmatch_lines([f"*_ {name} _*", expected])
    # No traceback: not the driver's, not SQLAlchemy's, not Django's.
    assert "OperationalError" not in result.stdout.str()
    assert "traceback" not in result.stdout.str().lower()


# Every worker holds its own connection before a test fills the server: else a worker
# would wait for a slot while the other fills the server test after test.
EVERY_WORKER_CONNECTED = """
import psycopg
import pytest
from worker_utils import get_worker_count
from worker_utils._util import wait_until


@pytest.fixture(scope="session", autouse=True)
def _every_worker_connected(worker_postgres_namespace, worker_postgres_server_url):
    run = worker_postgres_namespace.name.rpartition("_")[0]
    with psycopg.connect(worker_postgres_server_url) as conn:
        def made():
            query = "SELECT count(*) FROM pg_namespace WHERE starts_with(nspname, %s)"
            return conn.execute(query, [run + "_gw"]).fetchone()[0] >= get_worker_count() or None

        assert wait_until(made, timeout=30)
"""


def test_worker_utils_connections_wait_for_a_free_slot_then_fail_in_one_line(
    example: Example, small_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    idle(small_server)
    held = [occupy(small_server) for _ in range(10)]  # every slot, reserved ones too
    try:
        # A slot freed while a connection waits: it gets it.
        threading.Timer(0.3, held.pop().close).start()
        start, waited = time.monotonic(), SlotWaits.connections
        connect(small_server, wait=30).close()
        assert 0.3 <= time.monotonic() - start < 10
        assert SlotWaits.connections == waited + 1  # what the run's summary reports
        held.append(occupy(small_server))  # full again
        # No slot is freed: the run's first connection gives up after the setting's 0.5 s.
        monkeypatch.setenv(postgres.URL_VAR, small_server)
        monkeypatch.setenv("WORKER_UTILS_POSTGRES_SLOT_WAIT", "0.5")
        example.copy("exhaust")
        result = example.pytester.runpytest("-p", "no:randomly", "-p", "no:django")
    finally:
        for conn in held:
            conn.close()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    port = psycopg.conninfo.conninfo_to_dict(small_server)["port"]
    result.stderr.fnmatch_lines(
        [
            f"ERROR: worker_postgres: the server at 127.0.0.1:{port} had no free connection "
            f"slot for 0.5 s (sorry, too many clients already); run fewer workers (-n) or "
            f"concurrent runs, raise max_connections, or wait longer with "
            f"worker_utils_postgres_slot_wait"
        ]
    )


def owner_of(name: str) -> dict[str, Any] | None:
    with psycopg.connect(URL) as conn:
        row = conn.execute(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s",
            [name],
        ).fetchone()
    return parse_record(row[0] if row else None, "database", name)


def held_by(application_name: str) -> list[tuple[int, str]]:
    with psycopg.connect(URL) as conn:
        rows = conn.execute(
            "SELECT pid, datname FROM pg_stat_activity WHERE application_name = %s",
            [application_name],
        ).fetchall()
    return rows


def test_a_worker_database_holds_its_lock_inside_and_the_reaper_and_a_namesake_respect_it(
    prefix: str,
) -> None:
    run = f"budget-{JOB}"
    template = postgres.WorkerNamespace(
        URL, f"{prefix}_template", run, kind="database", template=True
    )
    worker = postgres.WorkerNamespace(URL, f"{prefix}_gw0", run, kind="database")
    try:
        template.create()
        template.drop(keep=True)  # as a run's template waits for workers' copies
        worker.create({"name": template.name, "clonable": True, "seeded": False})
        # Its one connection is in its own database, where its record says the lock is.
        ((pid, database),) = held_by(worker.application_name)
        assert database == worker.name
        assert (owner_of(worker.name) or {}).get("lockdb") == worker.name
        # A live worker's database, and its run's template, are kept.
        kept = dict(postgres.reap(URL).kept)
        assert kept[worker.name] == "its owner holds its lock"
        assert kept[template.name] == "a worker of its run is alive"
        # A second worker with the same name (a reused run id) is refused, and drops nothing.
        namesake = postgres.WorkerNamespace(URL, worker.name, run, kind="database")
        with pytest.raises(postgres.PostgresError) as refused:
            namesake.create()
        namesake.drop()
        assert str(refused.value) == (
            f'worker_postgres: database "{worker.name}" is in use by a live run with the same '
            f"run id (its owner holds its lock); give each concurrent run its own --testrunuid"
        )
        assert owner_of(worker.name) is not None
        # Its connection gone, the worker is dead: its database goes, then the template.
        execute(f"SELECT pg_terminate_backend({pid})")
        assert wait_until(lambda: held_by(worker.application_name) == [] or None, timeout=10)
        dropped = postgres.reap(URL).dropped
        assert {worker.name, template.name} <= set(dropped)
    finally:
        worker.drop()  # what a failure left, the prefix fixture reports and drops


def test_the_fleet_is_told_by_run_the_largest_first_and_the_rest_summed() -> None:
    names = {
        "test_worker_3f2a9c01be_gw0": 3,  # this run
        "test_worker_3f2a9c01be_gw1 (worker_utils)": 1,
        "my_app_prefix_ci_job_4711_gw12_archive": 2,  # a scratch database's
        "test_worker_0123456789_template (worker_utils)": 1,
        "test_worker_aaaaaaaaaa_master": 5,
        **{f"test_worker_{n}{n}{n}_gw0 (worker_ut": 1 for n in range(4)},  # cut at 63 bytes
        "psql": 4,
        "": 2,
    }
    use = ServerUse(max_connections=100, reserved=3)
    for name, count in names.items():
        label = run_label(name)
        if label is None:
            use.other += count
        else:
            use.by_run[label] = use.by_run.get(label, 0) + count
    assert use.describe("test_worker_3f2a9c01be") == (
        "the server holds 22 of its 100 connections (3 reserved): this run "
        "test_worker_3f2a9c01be 4, run test_worker_aaaaaaaaaa 5, run my_app_prefix_ci_job_4711 "
        "2, run test_worker_0123456789 1, run test_worker_000 1, 3 more runs 3, other 6"
    )
