"""The service example passes in random order on two workers only with the reset registry."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

SERVICE = Path(__file__).resolve().parents[2] / "examples" / "sandbox_service"


@pytest.fixture
def service(pytester: pytest.Pytester) -> pytest.Pytester:
    shutil.copytree(SERVICE, pytester.path, dirs_exist_ok=True)
    return pytester


def test_the_service_suite_passes_in_random_order_on_two_workers(service: pytest.Pytester) -> None:
    result = service.runpytest("-n", "2", "-p", "randomly")
    result.assert_outcomes(passed=6)
    result.stdout.fnmatch_lines(["Using --randomly-seed=*"])


def test_without_the_registry_a_test_sees_the_singletons_of_the_one_before(
    service: pytest.Pytester,
) -> None:
    # Six tests on two workers: some worker runs a second test, whatever the order.
    result = service.runpytest("-n", "2", "-p", "randomly", "-p", "no:worker_utils.sandbox.plugin")
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed", 0) >= 1, result.stdout.str()
    result.stdout.fnmatch_lines(["FAILED test_service.py::test_the_*"])
