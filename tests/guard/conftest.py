"""Example suites for the runtime guard, copied into a pytester directory."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).parent / "examples"

# The examples are suites of their own, run only through pytester.
collect_ignore = ["examples"]


@pytest.fixture
def example(pytester: pytest.Pytester) -> Callable[[str], Path]:
    """Copy ``examples/<name>`` into the pytester directory and return that directory."""

    def copy(name: str) -> Path:
        shutil.copytree(EXAMPLES / name, pytester.path, dirs_exist_ok=True)
        return pytester.path

    return copy
