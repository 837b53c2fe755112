"""Packaging: an editable install exposes the worker_utils package and nothing else."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_an_editable_install_puts_only_the_package_on_the_path(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True)
    # This environment's pip and build backend, no index, no build isolation and
    # no dependencies: the editable wheel `pip install -e` makes, in about a second.
    subprocess.run(
        [
            *(sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"),
            *("--no-deps", "--no-build-isolation", "--no-index", "--ignore-installed"),
            *("--prefix", venv, "--editable", ROOT),
        ],
        check=True,
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTHON")}

    def run(code: str, **more_env: str) -> list[str]:
        result = subprocess.run(
            [venv / "bin" / "python", "-c", code],
            cwd=elsewhere,
            env={**env, **more_env},
            capture_output=True,
            text=True,
            check=False,
        )
        assert (result.returncode, result.stderr) == (0, "")
        return result.stdout.splitlines()

    assert run(
        "import importlib.util\n"
        "for name in ('tests', 'conftest', 'benchmarks', 'examples', 'worker_utils'):\n"
        "    spec = importlib.util.find_spec(name)\n"
        "    print(name, spec and spec.origin)\n"
    ) == [
        "tests None",
        "conftest None",
        "benchmarks None",
        "examples None",
        f"worker_utils {ROOT / 'worker_utils' / '__init__.py'}",
    ]
    # Importing it needs its dependencies, left out above: lend this environment's.
    dependencies = sysconfig.get_paths()["purelib"]
    assert run("import worker_utils; print(worker_utils.__file__)", PYTHONPATH=dependencies) == [
        str(ROOT / "worker_utils" / "__init__.py")
    ]
