"""The guard reports duplicate and misplaced autouse fixtures when collection ends."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

FIX_DUPLICATE = (
    "keep one definition in the conftest.py shared by both, "
    "or declare a reset once with worker_utils.register_reset"
)
FIX_PLACE = "move it to conftest.py or make it function-scoped"
FINDINGS = [
    f"sub/conftest.py:5: autouse fixture 'reset_cache' already defined at conftest.py:5; "
    f"{FIX_DUPLICATE}",
    f"sub/test_orders.py:5: module-scoped autouse fixture 'load_orders' in a test module; "
    f"{FIX_PLACE}",
    f"sub/test_orders.py:10: session-scoped autouse fixture 'connect' in a test module; "
    f"{FIX_PLACE}",
    f"test_users.py:5: autouse fixture 'start_services' already defined at conftest.py:10; "
    f"{FIX_DUPLICATE}",
]


def test_strict_mode_fails_collection_with_one_report_listing_every_finding(
    pytester: pytest.Pytester, example: Callable[[str], Path]
) -> None:
    example("autouse")
    result = pytester.runpytest("--worker-utils-guard=strict", "-p", "no:randomly")
    result.assert_outcomes(errors=1)
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(
        [
            "*_ ERROR collecting test session _*",
            "worker_utils guard: 4 autouse fixture problems:",
            *FINDINGS,
            "*short test summary info*",
            "ERROR  - worker_utils guard: 4 autouse fixture problems:",
            "*Interrupted: 1 error during collection*",
        ]
    )
    result.stdout.no_fnmatch_line("*Traceback*")


def test_warn_mode_warns_at_each_definition_and_runs_the_tests(
    pytester: pytest.Pytester, example: Callable[[str], Path]
) -> None:
    example("autouse")
    result = pytester.runpytest("--worker-utils-guard", "-p", "no:randomly")
    result.assert_outcomes(passed=2, warnings=4)
    for finding in FINDINGS:
        path_line, message = finding.split(": ", 1)
        result.stdout.fnmatch_lines([f"  {path_line}: WorkerUtilsAutouseWarning: {message}"])


def test_warnings_turned_into_errors_fail_collection_as_strict_mode_does(
    pytester: pytest.Pytester, example: Callable[[str], Path]
) -> None:
    example("autouse")
    result = pytester.runpytest("--worker-utils-guard", "-W", "error", "-p", "no:randomly")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["worker_utils guard: 4 autouse fixture problems:", *FINDINGS])


@pytest.mark.parametrize("mode", ["warn", "strict"])
def test_under_two_workers_each_finding_is_reported_once(
    pytester: pytest.Pytester, example: Callable[[str], Path], mode: str
) -> None:
    example("autouse")
    result = pytester.runpytest(f"--worker-utils-guard={mode}", "-n", "2")
    if mode == "warn":
        result.assert_outcomes(passed=2, warnings=4)
        result.stdout.fnmatch_lines(["test_users.py:5", "  test_users.py:5: *"])
    else:
        result.assert_outcomes(errors=1)
        assert result.ret == pytest.ExitCode.TESTS_FAILED
        result.stdout.fnmatch_lines(["worker_utils guard: 4 autouse fixture problems:", *FINDINGS])
    # Once, not once per worker. The short summary is left out: on CI (CI=true)
    # pytest prints the whole message there again instead of cutting it short.
    report = result.stdout.str().split("short test summary info")[0]
    assert report.count("'start_services' already defined") == 1


def test_near_misses_are_not_reported(
    pytester: pytest.Pytester, example: Callable[[str], Path]
) -> None:
    example("autouse_ok")
    result = pytester.runpytest("--worker-utils-guard=strict")
    result.assert_outcomes(passed=2)
    result.stdout.no_fnmatch_line("*autouse*")


def test_only_the_selected_tests_are_checked(
    pytester: pytest.Pytester, example: Callable[[str], Path]
) -> None:
    example("autouse")
    result = pytester.runpytest("--worker-utils-guard=strict", "-k", "not orders")
    result.assert_outcomes(errors=1, deselected=1)
    result.stdout.fnmatch_lines(["test_users.py:5: autouse fixture 'start_services' *"])
    result.stdout.no_fnmatch_line("*test_orders*")


def test_without_the_guard_collection_reports_nothing(
    pytester: pytest.Pytester, example: Callable[[str], Path]
) -> None:
    example("autouse")
    result = pytester.runpytest()
    result.assert_outcomes(passed=2)
    result.stdout.no_fnmatch_line("*autouse*")
