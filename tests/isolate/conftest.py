"""Example suites for isolation, and a native module built once per session for them."""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Callable
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).parent / "examples"

# The examples are suites of their own, run only through pytester.
collect_ignore = ["examples"]


@pytest.fixture(scope="session")
def native_module(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``nativeonce``, compiled from examples/nativeonce.c with the running Python's headers."""
    compiler = shutil.which("gcc") or shutil.which("cc")
    if compiler is None or sys.platform == "win32":
        pytest.skip("needs a C compiler and POSIX threads")
    out = tmp_path_factory.mktemp("native") / f"nativeonce{sysconfig.get_config_var('EXT_SUFFIX')}"
    subprocess.run(
        [
            compiler,
            "-shared",
            "-fPIC",
            f"-I{sysconfig.get_paths()['include']}",
            str(EXAMPLES / "nativeonce.c"),
            "-o",
            str(out),
            "-lpthread",
        ],
        check=True,
    )
    return out


@pytest.fixture
def example(pytester: pytest.Pytester, native_module: Path) -> Callable[[str], Path]:
    """Copy ``examples/<name>`` and the native module into the pytester directory."""

    def copy(name: str) -> Path:
        shutil.copytree(EXAMPLES / name, pytester.path, dirs_exist_ok=True)
        shutil.copy(native_module, pytester.path)
        return pytester.path

    return copy
