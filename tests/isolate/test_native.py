"""Tests that each need a fresh native state: they fail together, pass isolated, never forked."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

NO_PLUGINS = ("-p", "no:randomly", "-p", "no:cacheprovider")


def test_without_isolation_the_second_test_fails(
    pytester: pytest.Pytester, example: Callable[[str], Path]
) -> None:
    example("native")
    result = pytester.runpytest_subprocess(*NO_PLUGINS, "-n", "0")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        ["E *RuntimeError: nativeonce: already initialised in this process"]
    )


def test_the_setting_isolates_every_test_under_a_path(
    pytester: pytest.Pytester, example: Callable[[str], Path]
) -> None:
    example("native")
    result = pytester.runpytest_subprocess(
        *NO_PLUGINS, "-n", "0", "--worker-utils-isolate", "test_runtime_a.py,test_runtime_b.py"
    )
    result.assert_outcomes(passed=2)


def test_the_marker_isolates_a_module_under_xdist(
    pytester: pytest.Pytester, example: Callable[[str], Path]
) -> None:
    path = example("native")
    for name in ("test_runtime_a.py", "test_runtime_b.py"):
        module = path / name
        module.write_text("import pytest\npytestmark = pytest.mark.isolated\n" + module.read_text())
    pytester.runpytest_subprocess(*NO_PLUGINS, "-n", "2").assert_outcomes(passed=2)


def test_a_fork_of_a_process_that_loaded_the_module_cannot_initialise_it(
    native_module: Path,
) -> None:
    # What pytest-forked does: the fork inherits the runtime lock, not the thread holding it.
    code = (
        "import os, sys\n"
        f"sys.path.insert(0, {str(native_module.parent)!r})\n"
        "import nativeonce\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    try:\n"
        "        nativeonce.init()\n"
        "    except RuntimeError as exc:\n"
        "        print(exc, flush=True)\n"
        "        os._exit(1)\n"
        "    os._exit(0)\n"
        "_, status = os.waitpid(pid, 0)\n"
        "sys.exit(os.waitstatus_to_exitcode(status))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30
    )
    assert (result.returncode, result.stdout) == (
        1,
        "nativeonce: the runtime lock is held by a thread that does not exist in this process\n",
    )


@pytest.fixture(scope="module")
def forked_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An interpreter with pytest-forked, in a venv of its own: it fails on pytest 9."""
    venv = tmp_path_factory.mktemp("forked") / "venv"
    subprocess.run([sys.executable, "-m", "venv", venv], check=True, timeout=120)
    python = venv / "bin" / "python"
    install = [python, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run([*install, "pytest>=8,<9", "pytest-forked"], check=True, timeout=600)
    return python


@pytest.mark.release  # installs pytest-forked into a venv: run by make dist-check
def test_pytest_forked_fails_where_isolation_passes(
    pytester: pytest.Pytester, example: Callable[[str], Path], forked_python: Path
) -> None:
    path = example("native")
    forked = subprocess.run(
        [forked_python, "-m", "pytest", *NO_PLUGINS, "--forked"],
        cwd=path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert forked.returncode == 1, forked.stdout + forked.stderr
    assert "2 failed in" in forked.stdout, forked.stdout
    # On the native state each fork inherited (the import started the runtime), not on pytest.
    lock = "RuntimeError: nativeonce: the runtime lock is held by a thread that does not exist"
    assert forked.stdout.count(f"E       {lock}") == 2, forked.stdout
    isolated = pytester.runpytest_subprocess(*NO_PLUGINS, "--worker-utils-isolate", "*")
    isolated.assert_outcomes(passed=2)


def test_an_isolated_test_never_runs_in_the_test_process(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        """
        import os

        def pytest_configure():
            os.environ.setdefault("TEST_PROCESS_PID", str(os.getpid()))
        """
    )
    pytester.makepyfile(
        """
        import os
        import pytest

        @pytest.mark.isolated
        def test_elsewhere():
            parent = int(os.environ["TEST_PROCESS_PID"])
            assert os.getpid() != parent
            assert os.getppid() != parent  # a fork of the zygote, not of the test process
        """
    )
    pytester.runpytest_subprocess(*NO_PLUGINS).assert_outcomes(passed=1)
