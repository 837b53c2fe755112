"""The reset registry: singletons declared once, reset after every test or at their scope."""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import worker_utils
from worker_utils import sandbox

Records = Callable[[], list[dict[str, Any]]]
IN_ORDER = ("-p", "no:randomly", "-p", "no:xdist")


@pytest.fixture(autouse=True)
def registry() -> Iterator[None]:
    """Keep the resets these tests register, and their inner runs in this process, out of the
    rest of the suite."""
    before = sandbox.registered_resets()
    yield
    for reset in sandbox.registered_resets():
        if reset not in before:
            sandbox.unregister_reset(reset.name)


def test_each_reset_runs_at_the_end_of_its_scope(
    pytester: pytest.Pytester, example: Callable[[str], Path], read_records: Records
) -> None:
    example("resets")
    result = pytester.runpytest(*IN_ORDER)
    result.assert_outcomes(passed=5)
    calls = Counter(record["reset"] for record in read_records() if "reset" in record)
    # Five tests. As for class-scoped fixtures, tests outside a class share their
    # module's: test_a and test_b, TestGroup, test_e. Two modules, one session.
    assert calls == {"function": 5, "class": 3, "module": 2, "session": 1}
    # Not named anywhere, the cached loader is never reset.
    assert len([r for r in read_records() if "loaded" in r]) == 1


def test_a_cache_named_in_the_ini_option_is_cleared_after_every_test(
    pytester: pytest.Pytester, example: Callable[[str], Path], read_records: Records
) -> None:
    example("resets")
    pytester.makeini("[pytest]\nworker_utils_reset = app.load_config\n")
    result = pytester.runpytest(*IN_ORDER)
    result.assert_outcomes(passed=5)
    assert len([r for r in read_records() if "loaded" in r]) == 5


def test_a_reset_that_raises_fails_the_test_it_ran_after_on_one_line(
    pytester: pytest.Pytester, example: Callable[[str], Path], read_records: Records
) -> None:
    example("resets")
    pytester.makeini("[pytest]\nworker_utils_reset = app:broken\n")
    result = pytester.runpytest("test_two.py", *IN_ORDER)
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_e*",
            "worker_utils reset 'app:broken' raised RuntimeError('the registry is gone')",
        ]
    )
    # The other resets still ran.
    assert {r["reset"] for r in read_records() if "reset" in r} == {
        "function",
        "class",
        "module",
        "session",
    }


def test_a_reset_that_cannot_be_found_stops_the_run_naming_the_setting(
    pytester: pytest.Pytester, example: Callable[[str], Path]
) -> None:
    example("resets")
    pytester.makeini("[pytest]\nworker_utils_reset = app:missing\n")
    result = pytester.runpytest(*IN_ORDER)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "ERROR: worker_utils_reset: 'app:missing' has no attribute 'missing'; "
            "give module:attribute or a dotted path to a function"
        ]
    )


not_callable = 42


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "nowhere.load",
            "cannot import 'nowhere.load' (ModuleNotFoundError: No module named 'nowhere'); "
            "give module:attribute or a dotted path to a function",
        ),
        (
            f"{__name__}.not_callable",
            f"'{__name__}.not_callable' is not callable; name a function that "
            "resets the singleton, or a functools.lru_cache function",
        ),
        (
            f"{__name__}:_cached.nothing",
            f"'{__name__}:_cached.nothing' has no attribute 'nothing'; "
            "give module:attribute or a dotted path to a function",
        ),
    ],
)
def test_a_name_that_is_not_a_reset_is_an_error_naming_the_setting(text: str, message: str) -> None:
    with pytest.raises(sandbox.ResetError) as excinfo:
        sandbox.resolve_reset(text, setting="worker_utils_reset")
    assert str(excinfo.value) == f"worker_utils_reset: {message}"


@functools.cache
def _cached() -> object:
    return object()


def test_a_dotted_path_to_an_lru_cache_function_resolves_to_its_cache_clear() -> None:
    clear = sandbox.resolve_reset(f"{__name__}._cached", setting="worker_utils_reset")
    first = _cached()
    clear()
    assert _cached() is not first


def test_registering_the_same_function_again_is_allowed() -> None:
    worker_utils.register_reset(_cached.cache_clear, name="cached")
    worker_utils.register_reset(_cached.cache_clear, name="cached")
    assert [r.name for r in sandbox.registered_resets()].count("cached") == 1


def test_a_name_taken_by_another_function_is_an_error() -> None:
    worker_utils.register_reset(_cached.cache_clear, name="cached")
    with pytest.raises(sandbox.ResetError) as excinfo:
        worker_utils.register_reset(print, name="cached")
    assert str(excinfo.value) == (
        "register_reset('cached'): the name is taken by "
        "tests.sandbox.test_resets._cached.cache_clear; give this reset another name, "
        "or call unregister_reset('cached') first"
    )


def test_an_unknown_scope_is_an_error() -> None:
    with pytest.raises(sandbox.ResetError) as excinfo:
        worker_utils.register_reset(_cached.cache_clear, name="cached", scope="worker")
    assert str(excinfo.value) == (
        "register_reset('cached'): scope 'worker' is not one of "
        "function, class, module, package, session"
    )
