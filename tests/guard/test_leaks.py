"""The guard names tests that leak os.environ, the working directory or sys.path."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

HINT = "use the worker_env fixture or undo the change in the test (the guard restored it)"
LEAKS = [
    f"test_leaks.py::test_sets_a_variable: leaked os.environ (set GUARD_EXAMPLE_NEW='1'); {HINT}",
    f"test_leaks.py::test_removes_a_variable: leaked os.environ "
    f"(removed GUARD_EXAMPLE_INHERITED); {HINT}",
    f"test_leaks.py::test_changes_directory: leaked cwd "
    f"(changed from '*' to '*test_changes_directory0'); {HINT}",
    f"test_leaks.py::test_extends_sys_path: leaked sys.path (added '/guard-example'); {HINT}",
]
CLEAN = ["test_uses_monkeypatch", "test_changes_nothing", "test_sees_the_original_state"]
IN_ORDER = ["-p", "no:randomly", "-p", "no:xdist"]


#: The variables the example suites set, and leak on purpose.
EXAMPLE_VARIABLES = ("GUARD_EXAMPLE_NEW", "GUARD_EXAMPLE_INHERITED", "GUARD_EXAMPLE_CWD")
EXAMPLE_VARIABLES += ("GUARD_EXAMPLE_SESSION", "GUARD_EXAMPLE_URL")


@pytest.fixture(autouse=True)
def _example_variables_go_after_the_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """The inner runs share this process: the variables their tests leak go after the test.

    pytester puts the working directory and ``sys.path`` back; monkeypatch, having
    seen each variable absent, removes it whatever the run did.
    """
    for name in EXAMPLE_VARIABLES:
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)


def _assert_clean_tests_not_named(result: pytest.RunResult) -> None:
    for name in CLEAN:
        result.stdout.no_fnmatch_line(f"*{name}: leaked*")


def test_it_warns_about_each_leak_names_only_the_leaking_tests_and_restores_the_state(
    pytester: pytest.Pytester, example: Callable[[str], Path]
) -> None:
    example("leaks")
    result = pytester.runpytest("--worker-utils-guard", "-rA", *IN_ORDER)
    result.assert_outcomes(passed=7, warnings=4)
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(
        [
            "test_leaks.py::test_sets_a_variable",
            f"  test_leaks.py:5: WorkerUtilsLeakWarning: {LEAKS[0]}",
        ]
    )
    result.stdout.fnmatch_lines([f"*WorkerUtilsLeakWarning: {leak}" for leak in LEAKS])
    _assert_clean_tests_not_named(result)
    # It runs last and asserts the state every leak changed is back as it was.
    result.stdout.fnmatch_lines(["PASSED test_zz_after.py::test_sees_the_original_state"])


def test_without_the_guard_a_leak_reaches_later_tests(
    pytester: pytest.Pytester, example: Callable[[str], Path]
) -> None:
    example("leaks")
    result = pytester.runpytest(*IN_ORDER)
    result.assert_outcomes(passed=6, failed=1)
    result.stdout.fnmatch_lines(["FAILED test_zz_after.py::test_sees_the_original_state - *"])


def test_it_is_off_by_default_so_a_leaking_suite_passes_silently(
    pytester: pytest.Pytester, example: Callable[[str], Path]
) -> None:
    example("leaks")
    result = pytester.runpytest("-k", "not original", *IN_ORDER)
    result.assert_outcomes(passed=6)
    result.stdout.no_fnmatch_line("*leaked*")
    result.stdout.no_fnmatch_line("*warning*")


def test_strict_mode_reports_each_leak_as_an_error_of_its_test(
    pytester: pytest.Pytester, example: Callable[[str], Path]
) -> None:
    example("leaks")
    result = pytester.runpytest("--worker-utils-guard=strict", *IN_ORDER)
    result.assert_outcomes(passed=7, errors=4)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        [
            "*_ ERROR at teardown of test_sets_a_variable _*",
            LEAKS[0],
            "*_ ERROR at teardown of test_removes_a_variable _*",
            LEAKS[1],
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "ERROR test_leaks.py::test_sets_a_variable - Failed: *",
            "ERROR test_leaks.py::test_removes_a_variable - Failed: *",
            "ERROR test_leaks.py::test_changes_directory - Failed: *",
            "ERROR test_leaks.py::test_extends_sys_path - Failed: *",
        ]
    )
    _assert_clean_tests_not_named(result)


@pytest.mark.parametrize("mode", ["warn", "strict"])
def test_it_catches_leaks_under_two_workers_and_names_the_leaking_test(
    pytester: pytest.Pytester, example: Callable[[str], Path], mode: str
) -> None:
    example("leaks")
    # The last test checks the order of one process; under -n 2 there is none.
    result = pytester.runpytest(f"--worker-utils-guard={mode}", "-n", "2", "-k", "not original")
    if mode == "warn":
        result.assert_outcomes(passed=6, warnings=4)
        expected = [f"  test_leaks.py:*: WorkerUtilsLeakWarning: {leak}" for leak in LEAKS]
    else:
        result.assert_outcomes(passed=6, errors=4)
        expected = LEAKS
    # Workers finish in any order: each line on its own.
    for line in expected:
        result.stdout.fnmatch_lines([line])
    _assert_clean_tests_not_named(result)


def test_the_ini_setting_enables_strict_mode(
    pytester: pytest.Pytester, example: Callable[[str], Path]
) -> None:
    example("leaks")
    pytester.makeini("[pytest]\nworker_utils_guard = strict\n")
    result = pytester.runpytest(*IN_ORDER)
    result.assert_outcomes(passed=7, errors=4)


def test_the_option_overrides_the_ini_setting(
    pytester: pytest.Pytester, example: Callable[[str], Path]
) -> None:
    example("leaks")
    pytester.makeini("[pytest]\nworker_utils_guard = strict\n")
    result = pytester.runpytest("--worker-utils-guard=off", "-k", "not original")
    result.assert_outcomes(passed=6)


def test_ignored_variables_are_neither_reported_nor_restored(
    pytester: pytest.Pytester, example: Callable[[str], Path]
) -> None:
    example("leaks")
    pytester.makeini("[pytest]\nworker_utils_guard_ignore_env = OTHER GUARD_EXAMPLE_N*\n")
    pytester.makepyfile(
        test_zzz_ignored="""
        import os

        def test_still_sees_the_ignored_variable():
            assert os.environ["GUARD_EXAMPLE_NEW"] == "1"
        """
    )
    result = pytester.runpytest("--worker-utils-guard=strict", "-k", "not original", *IN_ORDER)
    result.assert_outcomes(passed=7, errors=3)
    result.stdout.no_fnmatch_line("*GUARD_EXAMPLE_NEW*")


def test_a_failing_teardown_keeps_its_error_and_the_leak_becomes_a_warning(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        import os
        import pytest

        @pytest.fixture
        def broken():
            yield
            raise RuntimeError("teardown broke")

        def test_leaks_and_breaks(broken):
            os.environ["GUARD_EXAMPLE_NEW"] = "1"
        """
    )
    result = pytester.runpytest("--worker-utils-guard=strict", *IN_ORDER)
    result.assert_outcomes(passed=1, errors=1, warnings=1)
    result.stdout.fnmatch_lines(
        [
            "E       RuntimeError: teardown broke",
            "*WorkerUtilsLeakWarning: test_a_failing_teardown_keeps_its_error_and_the_leak"
            "_becomes_a_warning.py::test_leaks_and_breaks: leaked os.environ "
            f"(set GUARD_EXAMPLE_NEW='1'); {HINT}",
        ]
    )


def test_a_module_fixture_that_sets_and_restores_a_variable_blames_no_test(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        import os
        import pytest

        @pytest.fixture(scope="module")
        def service_url():
            os.environ["GUARD_EXAMPLE_URL"] = "http://localhost"
            yield
            del os.environ["GUARD_EXAMPLE_URL"]

        @pytest.mark.parametrize("n", range(3))
        def test_uses_the_service(service_url, n):
            assert os.environ["GUARD_EXAMPLE_URL"] == "http://localhost"
        """
    )
    result = pytester.runpytest("--worker-utils-guard=strict", *IN_ORDER)
    result.assert_outcomes(passed=3)
