"""Reports of isolated tests match those of the same tests run in process, in terminal and XML."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import pytest

NO_PLUGINS = ("-p", "no:randomly", "-p", "no:cacheprovider")
_TIMES = re.compile(r"\b\d+\.\d+s\b|in \d+\.\d+s.*")


def _terminal(lines: list[str]) -> list[str]:
    return [_TIMES.sub("<time>", line) for line in lines if not line.startswith("rootdir")]


def _junit(path: Path) -> list[tuple[str, dict[str, str], str]]:
    found = []
    for element in ET.parse(path).iter():
        attributes = {
            key: value
            for key, value in element.attrib.items()
            if key not in ("time", "timestamp", "hostname")
        }
        found.append((element.tag, attributes, (element.text or "").strip()))
    return found


def test_every_outcome_reads_the_same_isolated_as_in_process(
    pytester: pytest.Pytester, example: Callable[[str], Path]
) -> None:
    path = example("reports")
    args = (*NO_PLUGINS, "-rA", "-o", "junit_family=xunit1", "--junitxml", "out.xml")
    plain = pytester.runpytest_subprocess(*args)
    plain_xml = _junit(path / "out.xml")
    isolated = pytester.runpytest_subprocess(*args, "--worker-utils-isolate", "*")
    plain.assert_outcomes(passed=2, failed=2, errors=1, skipped=1, xfailed=1, warnings=1)
    assert _terminal(isolated.outlines) == _terminal(plain.outlines)
    assert _junit(path / "out.xml") == plain_xml


def test_a_crash_and_a_hang_are_failures_that_say_what_happened(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        import os, signal, sys, threading, time
        import pytest

        pytestmark = pytest.mark.isolated

        def test_segfaults():
            print("last words")
            os.kill(os.getpid(), signal.SIGSEGV)

        def test_exits():
            sys.stderr.write("leaving\\n")
            sys.stderr.flush()
            os._exit(3)

        def wait_in_a_thread():
            time.sleep(60)

        @pytest.mark.isolated(timeout=1)
        def test_hangs():
            threading.Thread(target=wait_in_a_thread, daemon=True).start()
            time.sleep(60)

        def test_still_runs():
            pass
        """
    )
    pytester.makeconftest(
        """
        import os

        def pytest_configure():
            os.environ.setdefault("TEST_PROCESS_PID", str(os.getpid()))
        """
    )
    pytester.makepyfile(
        test_crashes_on_import="""
        import os, signal
        import pytest

        if os.getpid() != int(os.environ["TEST_PROCESS_PID"]):  # in the isolated process
            os.kill(os.getpid(), signal.SIGSEGV)

        @pytest.mark.isolated
        def test_never_runs():
            pass
        """
    )
    result = pytester.runpytest_subprocess(*NO_PLUGINS, "--junitxml", "out.xml")
    result.assert_outcomes(passed=1, failed=3, errors=1)
    result.stdout.fnmatch_lines(
        [
            "worker_utils.isolate: the isolated process running "
            "test_crashes_on_import.py::test_never_runs was killed by signal 11 (SIGSEGV) "
            "during setup",
            "--- last output of the isolated process ---",
            "Fatal Python error: Segmentation fault",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "worker_utils.isolate: the isolated process running "
            "test_a_crash_and_a_hang_are_failures_that_say_what_happened.py::test_segfaults "
            "was killed by signal 11 (SIGSEGV) during call",
            "--- last output of the isolated process ---",
            "Fatal Python error: Segmentation fault",
            "*test_a_crash_and_a_hang*.py*line * in test_segfaults",
            "*- Captured stdout call -*",
            "last words",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "*::test_exits exited with code 3 during call",
            "--- last output of the isolated process ---",
            "leaving",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "worker_utils.isolate: *::test_hangs ran longer than 1 s, the limit of "
            "@pytest.mark.isolated(timeout=1); its process was ended. Stacks of its threads:",
            "Fatal Python error: Aborted",
            "Thread 0x* (most recent call first):",
            "*line * in wait_in_a_thread",
            "Current thread 0x* (most recent call first):",
            "*line * in test_hangs",
        ]
    )
    xml = ET.parse(pytester.path / "out.xml")
    failures = [
        element.get("message", "") for tag in ("failure", "error") for element in xml.iter(tag)
    ]
    assert len(failures) == 4
    assert all("worker_utils.isolate: " in message for message in failures)
