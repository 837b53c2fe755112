"""A run ended by SIGTERM (``timeout``, ``docker stop``, a CI cancel) cleans up as Ctrl-C does."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import psycopg
import pytest
import redis

from tests.postgres.conftest import URL as POSTGRES_URL
from worker_utils import postgres
from worker_utils._worker import run_tag
from worker_utils.run import coordination
from worker_utils.servers._process import ProcessId

EXAMPLES = Path(__file__).parent / "examples"
REDIS_URL = "redis://127.0.0.1:6379/0"  # noqa: WU202,WU602 the machine's server

Records = Callable[[], list[dict[str, Any]]]


@pytest.fixture
def reap_leftovers(private_tmp_root: Path) -> Iterator[None]:
    """After the test, whatever the run left is removed, as the next run would remove it."""
    yield
    coordination.reap_dead_runs()


def start_and_wait(directory: Path, record_dir: Path) -> subprocess.Popen[str]:
    """Start the hanging suite at -n 2 in a process group of its own; wait for both workers."""
    run = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:randomly", "-n", "2"],
        cwd=directory,
        env={
            **os.environ,
            "PYTEST_ADDOPTS": os.environ.get("PYTEST_ADDOPTS", "")
            + " -p no:pytest_postgresql -p no:pytest_redis",
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while len(list(record_dir.glob("*.json"))) < 2:
        if run.poll() is not None or time.monotonic() > deadline:
            run.kill()
            pytest.fail(f"the workers never got ready:\n{run.communicate()[0]}")
        time.sleep(0.05)
    return run


def names_with(tag: str) -> list[str]:
    """Schemas and databases on the machine's server whose names hold ``tag``."""
    with psycopg.connect(POSTGRES_URL) as conn:
        rows = conn.execute(
            "SELECT nspname FROM pg_namespace WHERE strpos(nspname, %(tag)s) > 0 UNION ALL "
            "SELECT datname FROM pg_database WHERE strpos(datname, %(tag)s) > 0",
            {"tag": tag},
        ).fetchall()
    return [row[0] for row in rows]


def lease_keys_of(run: str) -> list[bytes]:
    """The bookkeeping keys on the machine's Redis whose value names ``run``."""
    with redis.Redis.from_url(REDIS_URL) as client:
        keys = list(client.scan_iter("worker_utils:*"))
        return [key for key in keys if run.encode() in (client.get(key) or b"")]


def _group(process: psutil.Process) -> int | None:
    try:
        return os.getpgid(process.pid)
    except OSError:
        return None


@pytest.mark.usefixtures("reap_leftovers")
@pytest.mark.parametrize(
    ("servers", "target"),
    [("embedded", "controller"), ("urls", "group")],
    ids=["embedded servers, SIGTERM to the controller", "URLs, SIGTERM to the run's group"],
)
def test_sigterm_leaves_no_process_server_schema_lease_or_directory(
    servers: str,
    target: str,
    pytester: pytest.Pytester,
    record_dir: Path,
    read_records: Records,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if servers == "embedded":
        monkeypatch.delenv(postgres.URL_VAR, raising=False)
        monkeypatch.delenv("WORKER_UTILS_REDIS_URL", raising=False)
    else:
        monkeypatch.setenv(postgres.URL_VAR, POSTGRES_URL)
        monkeypatch.setenv("WORKER_UTILS_REDIS_URL", REDIS_URL)
    shutil.copy(EXAMPLES / "hang.py", pytester.path / "test_hang.py")
    run = start_and_wait(pytester.path, record_dir)
    os.kill(run.pid, signal.SIGTERM)  # kill PID, a CI runner's cancel, docker stop
    if target == "group":
        os.killpg(run.pid, signal.SIGTERM)  # timeout(1) signals the process, then its group
    output = run.communicate(timeout=60)[0]
    records = read_records()
    (uid,) = {r["run"] for r in records}
    run_dir = Path(records[0]["run_dir"])

    left = [f"process {p.pid} of the run" for p in psutil.process_iter() if _group(p) == run.pid]
    left += [f"worker {r['worker']['pid']}" for r in records if ProcessId(**r["worker"]).alive()]
    left += [str(path) for path in (run_dir, Path(f"{run_dir}.lock")) if path.exists()]
    if servers == "embedded":
        left += [
            f"{name} server"
            for name in ("postgres", "redis")
            if ProcessId(**records[0][name]).alive()
        ]
        left += [
            path for path in (records[0]["data"], records[0]["sockets"]) if Path(path).exists()
        ]
    else:
        left += names_with(run_tag(uid))
        left += [f"redis key {key!r}" for key in lease_keys_of(uid)]
    assert left == []
    assert "PluggyTeardownRaisedWarning" not in output
    assert run.returncode == pytest.ExitCode.INTERRUPTED, output


@pytest.fixture
def sigterm_handler() -> Iterator[None]:
    """Puts back this process's own SIGTERM handler after the test changes it."""
    saved = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, saved)


def _keep(signum: int, frame: object) -> None:
    """A SIGTERM handler of the project's own."""


@pytest.mark.usefixtures("sigterm_handler")
@pytest.mark.parametrize(
    ("before", "during"),
    [(signal.SIG_DFL, "SigtermAsInterrupt"), (_keep, "_keep")],
    ids=["the default action", "a project's own handler"],
)
def test_a_run_takes_sigterm_over_only_from_the_default_and_gives_it_back(
    before: Any, during: str, pytester: pytest.Pytester
) -> None:
    pytester.makepyfile(
        f"""
        import signal

        def test_handler():
            handler = signal.getsignal(signal.SIGTERM)
            name = getattr(handler, "__qualname__", "")
            assert name.split(".")[0] == {during!r}
        """
    )
    signal.signal(signal.SIGTERM, before)
    pytester.runpytest_inprocess("-p", "no:xdist", "-p", "no:randomly").assert_outcomes(passed=1)
    assert signal.getsignal(signal.SIGTERM) is before


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_the_interrupt_names_the_line_it_stopped_as_without_the_plugin(
    pytester: pytest.Pytester, signum: int
) -> None:
    pytester.makepyfile(
        test_stop=f"""
        import os
        import time

        def test_stopped():
            os.kill(os.getpid(), {int(signum)})
            time.sleep(5)
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:randomly", "-n", "0")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(["*test_stop.py:5: KeyboardInterrupt"])
    result.stdout.no_fnmatch_line("*_signals.py*")
