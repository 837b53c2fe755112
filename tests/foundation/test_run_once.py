"""run_once: computed once per run, shared, torn down once after the last worker."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import worker_utils as wu
from worker_utils.run import coordination

SUITE = """
import os, time
import pytest
import worker_utils as wu

def build():
    time.sleep(0.3)  # long enough that every worker arrives while it runs
    with open(os.environ["WU_TEST_ONCE_LOG"], "a") as log:
        log.write(f"compute {wu.get_worker_id()}\\n")
    return {"built_by": wu.get_worker_id(), "values": (1, 2)}

def drop(value):
    with open(os.environ["WU_TEST_ONCE_LOG"], "a") as log:
        log.write(f"teardown {value['built_by']}\\n")

@pytest.fixture(scope="session")
def shared(run_once):
    return run_once("expensive", build, teardown=drop)

@pytest.mark.parametrize("n", range(6))
def test_uses_it(n, shared):
    # JSON travels between workers: the builder sees the decoded value too.
    assert shared["values"] == [1, 2]
    with open(os.environ["WU_TEST_ONCE_LOG"], "a") as log:
        log.write(f"used {wu.get_worker_id()} {shared['built_by']}\\n")
"""


# Three workers prove for any number of them what two would.
@pytest.mark.parametrize("args", [["-n", "0"], ["-n", "3"], ["-p", "no:xdist"]], ids=" ".join)
def test_it_computes_once_and_tears_down_once_after_the_last_worker(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, args: list[str]
) -> None:
    log = pytester.path / "once.log"
    monkeypatch.setenv("WU_TEST_ONCE_LOG", str(log))
    pytester.makepyfile(test_once=SUITE)
    pytester.runpytest(*args).assert_outcomes(passed=6)
    lines = log.read_text().splitlines()
    computes = [line for line in lines if line.startswith("compute")]
    assert len(computes) == 1
    builder = computes[0].split()[1]
    assert lines[-1] == f"teardown {builder}", "the teardown runs last, after every test"
    assert sum(line.startswith("teardown") for line in lines) == 1
    uses = [line for line in lines if line.startswith("used")]
    assert len(uses) == 6
    assert {line.split()[2] for line in uses} == {builder}


@pytest.mark.parametrize("n", ["0", "2"])
def test_the_teardown_is_the_one_of_the_conftest_that_registered_it(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, n: str
) -> None:
    # Two conftest.py files outside packages: sys.modules["conftest"] is the last
    # one pytest imported (the xdist controller imports test_api/conftest.py too).
    log = pytester.path / "once.log"
    monkeypatch.setenv("WU_TEST_ONCE_LOG", str(log))
    pytester.makeconftest(SUITE.partition("@pytest.mark.parametrize")[0])
    (pytester.path / "test_api").mkdir()
    (pytester.path / "test_api" / "conftest.py").write_text(
        "import os\n\n\ndef drop(value):\n"
        "    with open(os.environ['WU_TEST_ONCE_LOG'], 'a') as log:\n"
        "        log.write('the other conftest\\n')\n"
    )
    (pytester.path / "test_api" / "test_it.py").write_text("def test_it(shared):\n    pass\n")
    result = pytester.runpytest("-p", "no:randomly", "-n", n)
    result.assert_outcomes(passed=1)
    result.stdout.no_fnmatch_line("worker_utils: run_once*")
    assert log.read_text().splitlines()[-1].startswith("teardown ")


def test_a_value_that_is_not_json_fails_with_a_clear_message(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        def make():
            return object()

        def test_it(run_once):
            run_once("bad", make)
        """
    )
    result = pytester.runpytest("-n", "0")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "run_once('bad'): the value returned by make is not JSON-serialisable "
            "(Object of type object is not JSON serializable); return plain data (dict, list, "
            "str, int, float, bool, None) and rebuild objects from it in each worker",
        ]
    )
    result.stdout.no_fnmatch_line("*During handling*")
    result.stdout.no_fnmatch_line("*Traceback*")


def test_a_teardown_that_is_not_module_level_is_refused(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        def test_it(run_once):
            run_once("x", lambda: 1, teardown=lambda value: None)
        """
    )
    result = pytester.runpytest("-p", "no:xdist")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "run_once('x'): teardown test_it.<locals>.<lambda> must be a module-level "
            "function, because it runs in the controller after the last worker ends; move it to "
            "the top level of a conftest or module",
        ]
    )


def test_a_bad_key_is_refused(tmp_path: Path) -> None:
    with pytest.raises(wu.RunOnceError) as excinfo:
        wu.run_once("../up", lambda: 1, run_dir=tmp_path)
    assert str(excinfo.value) == (
        "run_once: key '../up' is not a valid name; use 1-100 letters, digits, '_', '.' or '-'"
    )


def test_a_failed_compute_is_not_stored_and_the_next_caller_retries(tmp_path: Path) -> None:
    def fail() -> int:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        wu.run_once("k", fail, run_dir=tmp_path)
    assert wu.run_once("k", lambda: 7, run_dir=tmp_path) == 7
    assert wu.run_once("k", lambda: 8, run_dir=tmp_path) == 7


def test_waiting_too_long_for_another_worker_says_which_argument_to_raise(
    tmp_path: Path,
) -> None:
    import filelock

    (tmp_path / "once").mkdir()
    # The lock is held through another file descriptor, as by another worker.
    with (
        filelock.FileLock(tmp_path / "once" / "slow.lock"),
        pytest.raises(wu.RunOnceError) as excinfo,
    ):
        wu.run_once("slow", lambda: 1, run_dir=tmp_path, timeout=0.1)
    assert str(excinfo.value) == (
        "run_once('slow'): waited 0.1s for another worker's setup; "
        "raise the timeout= argument if the setup is that slow"
    )


def drop_marker(value: str) -> None:
    Path(value).write_text("torn down")


def test_a_killed_run_is_reaped_by_the_next_and_its_own_teardowns_run(
    pytester: pytest.Pytester, tmp_path: Path
) -> None:
    marker = tmp_path / "marker"
    # A run killed with SIGKILL leaves its directory; model its owner as a child
    # process holding the liveness lock, then kill it.
    script = (
        "import sys, time\n"
        "from worker_utils.run import coordination\n"
        "lock = coordination.RunLock(sys.argv[1]); path = lock.acquire()\n"
        "coordination.run_once('srv', lambda: sys.argv[2], run_dir=path)\n"
        "print(path, flush=True); time.sleep(60)\n"
    )
    owner = subprocess.Popen(
        [sys.executable, "-c", script, "killedrun0001", str(marker)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert owner.stdout is not None
    run_dir = Path(owner.stdout.readline().strip())
    # Register a teardown from outside worker_utils, as a user's conftest would.
    record = run_dir / "once" / "srv.json"
    data = json.loads(record.read_text())
    data["teardown"] = "tests.foundation.test_run_once:drop_marker"
    record.write_text(json.dumps(data))
    assert run_dir not in coordination.reap_dead_runs(), "a live run is never reaped"
    assert run_dir.exists()
    os.kill(owner.pid, signal.SIGKILL)
    owner.wait()
    owner.stdout.close()
    with pytest.warns(UserWarning, match="not run, because the run that registered it is gone"):
        removed = coordination.reap_dead_runs()
    assert run_dir in removed
    assert not run_dir.exists()
    assert not Path(f"{run_dir}.lock").exists()
    # Only worker_utils' own teardowns run for a dead run; a user's is reported.
    assert not marker.exists()


def test_a_killed_run_leaves_a_directory_that_the_next_pytest_run_removes(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        import time
        def test_hang(run_tmp_path):
            print("RUN", run_tmp_path.parent, flush=True)
            time.sleep(60)
        """
    )
    run = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-s", "-p", "no:xdist", "-p", "no:randomly"],
        cwd=pytester.path,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert run.stdout is not None
    run_dir = None
    for line in run.stdout:
        if "RUN " in line:  # pytest prints it after the file name, on the same line
            run_dir = Path(line.split("RUN ")[1].split()[0])
            break
    assert run_dir is not None
    assert run_dir.exists()
    run.send_signal(signal.SIGKILL)
    run.wait()
    run.stdout.close()
    assert run_dir.exists(), "SIGKILL gives the run no chance to clean up"
    time.sleep(0.05)
    pytester.makepyfile("def test_hang(): pass")
    pytester.runpytest("-p", "no:xdist").assert_outcomes(passed=1)
    assert not run_dir.exists()


def test_a_second_live_run_with_the_same_id_on_this_host_is_one_usage_error(
    pytester: pytest.Pytester,
) -> None:
    lock = coordination.RunLock("wu-same-id")
    lock.acquire()  # as a live run with that id would hold it
    try:
        pytester.makepyfile("def test_it(): pass")
        result = pytester.runpytest_subprocess("-p", "no:randomly", "--testrunuid=wu-same-id")
        assert result.ret == pytest.ExitCode.USAGE_ERROR
        assert [line for line in result.stderr.lines if line] == [
            "ERROR: --testrunuid wu-same-id: a run with this id is live on this host; give "
            "each concurrent run its own --testrunuid"
        ]
    finally:
        lock.release()


@pytest.mark.parametrize("n", ["0", "2"])
def test_a_failing_teardown_fails_the_run_with_its_line(pytester: pytest.Pytester, n: str) -> None:
    pytester.makepyfile(
        test_once="""
        import pytest

        def build():
            return 1

        def drop(value):
            raise RuntimeError("the index server is gone")

        @pytest.fixture(scope="session")
        def shared(run_once):
            return run_once("teardown-fails", build, teardown=drop)

        def test_it(shared):
            assert shared == 1
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:randomly", "-n", n)
    result.assert_outcomes(passed=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stderr.fnmatch_lines(
        ["worker_utils: run_once('teardown-fails') teardown *drop*the index server is gone*"]
    )
