"""Meta-tests: the public surface is documented and exercised by the suite."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import worker_utils
from worker_utils import plugin

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests"


def _fixture_names() -> list[str]:
    return sorted(
        name
        for module in plugin.resource_plugins()
        for name, obj in vars(module).items()
        if not name.startswith("_") and hasattr(obj, "_fixture_function_marker")
    )


def _test_sources() -> str:
    return "\n".join(
        path.read_text() for path in TESTS.rglob("*.py") if path.name != "test_meta.py"
    )


def test_the_reference_and_settings_pages_are_generated_from_the_current_code() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "docs" / "gen_reference.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("name", worker_utils.__all__)
def test_every_public_name_is_documented_and_tested(name: str) -> None:
    obj = getattr(worker_utils, name)
    assert (obj.__doc__ or "").strip(), f"{name} has no docstring"
    assert re.search(rf"\b{name}\b", _test_sources()), f"no test mentions {name}"


@pytest.mark.parametrize("name", _fixture_names())
def test_every_fixture_is_documented_in_a_guide_and_tested(name: str) -> None:
    guides = "\n".join(
        path.read_text() for path in (ROOT / "docs").glob("*.md") if path.name != "reference.md"
    )
    assert re.search(rf"\b{name}\b", guides), f"no guide page mentions {name}"
    assert re.search(rf"\b{name}\b", _test_sources()), f"no test uses {name}"


def test_the_plugin_never_defines_fixtures_that_xdist_owns() -> None:
    assert {"worker_id", "testrun_uid"}.isdisjoint(_fixture_names())


def test_importing_the_package_loads_neither_pytest_nor_database_drivers() -> None:
    code = (
        "import sys, worker_utils\n"
        "heavy = [m for m in ('pytest', '_pytest', 'psycopg', 'redis') if m in sys.modules]\n"
        "print(heavy)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "[]", result.stderr


def test_the_package_is_marked_typed() -> None:
    assert (ROOT / "worker_utils" / "py.typed").exists()


def test_every_design_decision_record_has_the_four_sections() -> None:
    records = sorted((ROOT / "adr").glob("[0-9][0-9][0-9][0-9]-*.md"))
    assert records
    for record in records:
        text = record.read_text()
        for heading in ("## Context", "## Decision", "## Alternatives", "## Consequences"):
            assert heading in text, f"{record.name} lacks {heading}"


def test_the_design_decision_index_lists_every_record() -> None:
    index = (ROOT / "adr" / "README.md").read_text()
    for record in (ROOT / "adr").glob("[0-9][0-9][0-9][0-9]-*.md"):
        assert f"({record.name})" in index, f"adr/README.md does not list {record.name}"


def test_every_error_the_package_defines_derives_from_worker_utils_error() -> None:
    import importlib
    import pkgutil

    errors = []
    for info in pkgutil.walk_packages(worker_utils.__path__, "worker_utils."):
        module = importlib.import_module(info.name)
        for obj in vars(module).values():
            if (
                isinstance(obj, type)
                and issubclass(obj, Exception)
                and obj.__module__ == info.name
                and not issubclass(obj, Warning)
            ):
                errors.append(obj)
    assert len(errors) >= 10
    outside = [e.__qualname__ for e in errors if not issubclass(e, worker_utils.WorkerUtilsError)]
    assert outside == []
