"""Example suites for the state sandbox, copied into a pytester directory."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).parent / "examples"

collect_ignore = ["examples"]


@pytest.fixture
def example(pytester: pytest.Pytester) -> Callable[[str], Path]:
    """Copy ``examples/<name>`` (a directory, or a module made a test module) into pytester's."""

    def copy(name: str) -> Path:
        source = EXAMPLES / name
        if source.is_dir():
            shutil.copytree(source, pytester.path, dirs_exist_ok=True)
        else:
            shutil.copy(EXAMPLES / f"{name}.py", pytester.path / f"test_{name}.py")
        return pytester.path

    return copy
