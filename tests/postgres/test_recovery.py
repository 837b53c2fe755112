"""Crashes: a killed worker, a killed run, and the embedded server of a killed run."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from tests.postgres.conftest import URL, Example, execute, schemas
from worker_utils import postgres
from worker_utils._util import wait_until
from worker_utils.postgres import _names
from worker_utils.servers._process import ProcessId

Records = Callable[[], list[dict[str, Any]]]


# A readable run id, as a CI job gives one; this process's pid keeps it apart from
# the same test in a concurrent run of this suite.
JOB = os.getpid()


def kill_run_when_ready(example: Example, record_dir: Path, *args: str) -> None:
    """Start the crash suite hanging in two workers, then SIGKILL the whole run."""
    directory = example.copy("crash", example.pytester.path / "killed")
    run = example.popen(directory, "-n", "2", *args, env={"WU_TEST_HANG": "1"})

    def ready() -> bool | None:
        assert run.poll() is None, run.communicate()[0]
        return len(list(record_dir.glob("ready-*"))) >= 2 or None

    assert wait_until(ready, timeout=60), "the workers never became ready"
    os.killpg(run.pid, signal.SIGKILL)
    run.communicate()


def wait_for_backends_to_exit(names: list[str], url: str) -> None:
    """The server notices a killed client's closed socket a moment later."""
    with psycopg.connect(url, autocommit=True) as conn:

        def gone() -> bool | None:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = ANY(%s)", [names]
            ).fetchone()
            return row == (0,) or None

        assert wait_until(gone, timeout=10), f"backends of {names} still running"


def reap_command(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "worker_utils", "reap", "--postgres-url", url, *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_worker_killed_mid_test_does_not_stop_the_run_and_its_schema_is_dropped(
    example: Example, scratch_database: str, record_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WU_TEST_KILL", "1")
    example.copy("crash")
    result = example.pytester.runpytest_subprocess("-n", "2", "-p", "no:randomly")
    result.assert_outcomes(passed=4, failed=1)
    result.stdout.fnmatch_lines(["*worker 'gw*' crashed while running*"])
    assert schemas(example.prefix, scratch_database) == []


def test_reap_drops_what_a_killed_run_left_and_nothing_else(
    example: Example, scratch_database: str, record_dir: Path, read_records: Records
) -> None:
    url = scratch_database
    kill_run_when_ready(example, record_dir, f"--testrunuid=ci-job-{JOB}")
    left = sorted({r["schema"] for r in read_records()})
    # The run id given on the command line is readable in the names.
    assert left == [f"{example.prefix}_ci_job_{JOB}_gw0", f"{example.prefix}_ci_job_{JOB}_gw1"]
    assert schemas(example.prefix, url) == left
    wait_for_backends_to_exit(left, url)
    user_schema = f"{example.prefix}_gw0"
    execute(f"CREATE SCHEMA {user_schema}", url)
    dry = reap_command(url, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    for name in left:
        assert f"would drop schema {name}" in dry.stdout.splitlines()
    assert schemas(example.prefix, url) == sorted([*left, user_schema])
    done = reap_command(url)
    assert done.returncode == 0, done.stderr
    for name in left:
        assert f"dropped schema {name}" in done.stdout.splitlines()
    assert schemas(example.prefix, url) == [user_schema]


def test_the_next_run_drops_what_a_killed_run_left(
    example: Example, scratch_database: str, record_dir: Path, read_records: Records
) -> None:
    url = scratch_database
    kill_run_when_ready(example, record_dir)
    left = sorted({r["schema"] for r in read_records()})
    assert schemas(example.prefix, url) == left
    wait_for_backends_to_exit(left, url)
    example.pytester.makepyfile(test_nothing="def test_nothing(): pass")
    example.pytester.runpytest("test_nothing.py").assert_outcomes(passed=1)
    assert schemas(example.prefix, url) == []


def server_is_gone(record: dict[str, Any]) -> bool:
    listening = subprocess.run(["ss", "-Htln", f"sport = :{record['port']}"], capture_output=True)
    processes = subprocess.run(["pgrep", "-f", record["data"]], capture_output=True)
    return (
        not Path(record["data"]).exists()
        and not listening.stdout.strip()
        and processes.returncode == 1
    )


def test_without_a_url_one_embedded_server_serves_the_run_and_nothing_remains(
    example: Example, read_records: Records, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(postgres.URL_VAR)
    example.copy("crash")
    result = example.pytester.runpytest_subprocess("-n", "2", "-p", "no:randomly")
    result.assert_outcomes(passed=5)
    records = read_records()
    assert len({(r["port"], r["started"], r["data"]) for r in records}) == 1
    assert len({r["schema"] for r in records}) == 2
    assert server_is_gone(records[0])


@pytest.mark.usefixtures("private_tmp_root")
def test_the_embedded_server_of_a_killed_run_is_stopped_by_the_next_run(
    example: Example, record_dir: Path, read_records: Records, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(postgres.URL_VAR)
    kill_run_when_ready(example, record_dir)
    records = read_records()
    assert not server_is_gone(records[0])
    pid = int((Path(records[0]["data"]) / "postmaster.pid").read_text().split()[0])
    server = ProcessId.of(pid)
    assert server is not None
    example.pytester.makepyfile(test_nothing="def test_nothing(): pass")
    example.pytester.runpytest("test_nothing.py").assert_outcomes(passed=1)
    assert not server.alive()
    assert server_is_gone(records[0])


def ours(result: postgres.ReapResult, name: str) -> tuple[list[str], list[tuple[str, str]]]:
    """What the reaper dropped and kept of namespace ``name``.

    Concurrent runs' databases are server-wide, so the reaper sees them too.
    """
    return (
        [each for each in result.dropped if each == name],
        [entry for entry in result.kept if entry[0] == name],
    )


@pytest.mark.parametrize("reused", [True, False], ids=["its pid now names another", "it runs"])
def test_reap_drops_a_namespace_only_when_its_owner_is_gone(
    example: Example, scratch_database: str, reused: bool
) -> None:
    url = scratch_database
    name = f"{example.prefix}_gw0"
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        owner = ProcessId.of(child.pid)
        assert owner is not None
        with psycopg.connect(url, autocommit=True) as conn:
            record = _names.record("schema", name, conn.info.dbname, "x")
            # An owner on this host whose pid was, or still is, the child's.
            record.update(pid=owner.pid, started=owner.started - 30 if reused else owner.started)
            conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
            conn.execute(
                sql.SQL("COMMENT ON SCHEMA {} IS {}").format(
                    sql.Identifier(name), sql.Literal(json.dumps(record))
                )
            )
        result = postgres.reap(url)
    finally:
        child.kill()
        child.wait()
    if reused:
        assert ours(result, name) == ([name], [])
    else:
        reason = f"its owner, process {owner.pid} on this host, is alive"
        assert ours(result, name) == ([], [(name, reason)])
        execute(f"DROP SCHEMA {name}", url)


def test_reap_keeps_a_namespace_of_another_host_while_its_lock_is_held(
    example: Example, scratch_database: str
) -> None:
    url = scratch_database
    name = f"{example.prefix}_gw0"
    with psycopg.connect(url, autocommit=True) as owner:
        record = _names.record("schema", name, owner.info.dbname, "x")
        # A worker on another host: its process cannot be looked up from here.
        record.update(host=f"not-{socket.gethostname()}", pid=1, started=0.0)
        owner.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
        owner.execute(
            sql.SQL("COMMENT ON SCHEMA {} IS {}").format(
                sql.Identifier(name), sql.Literal(json.dumps(record))
            )
        )
        owner.execute("SELECT pg_advisory_lock(%s)", [record["lock"]])
        held = postgres.reap(url)
        owner.execute("SELECT pg_advisory_unlock(%s)", [record["lock"]])
        released = postgres.reap(url)
    assert ours(held, name) == ([], [(name, "its owner holds its lock")])
    assert ours(released, name) == ([name], [])


BUILD_TEMPLATE = """
import sys
from worker_utils import postgres

postgres.build_template(
    sys.argv[1], sys.argv[2], sys.argv[3], "schema", "public",
    lambda conn: conn.execute("CREATE TABLE item (id int)"),
)
print("built", flush=True)
sys.stdin.read()  # alive, as a worker is until the others have copied the template
"""


def test_reap_keeps_a_template_while_its_builder_lives_and_drops_it_after(prefix: str) -> None:
    run_uid = f"template-{JOB}"
    name = postgres.template_name(run_uid, prefix)
    builder = subprocess.Popen(
        [sys.executable, "-c", BUILD_TEMPLATE, URL, run_uid, prefix],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert builder.stdout is not None
    try:
        assert builder.stdout.readline() == "built\n"
        alive = postgres.reap(URL)
    finally:
        builder.communicate(timeout=30)  # it exits
    dead = postgres.reap(URL)
    assert (name, f"its owner, process {builder.pid} on this host, is alive") in alive.kept
    assert name not in alive.dropped
    # Dropped now, unless another run's reaper on the server was quicker.
    assert name not in [kept for kept, _ in dead.kept]
    assert name in dead.dropped or name not in schemas(prefix)
