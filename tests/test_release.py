"""The release: the sdist and the wheel install into a clean virtual environment and run the demo.

Marked ``release`` (deselected by default): building and installing take a
minute, so ``make dist-check`` runs these as a separate CI step.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from email.parser import HeaderParser
from pathlib import Path

import pytest
import tomllib

import worker_utils

pytestmark = pytest.mark.release

ROOT = Path(__file__).parents[1]
with (ROOT / "pyproject.toml").open("rb") as _stream:
    PROJECT = tomllib.load(_stream)["project"]
VERSION = PROJECT["version"]
SDIST = f"pytest_worker_utils-{VERSION}.tar.gz"
WHEEL = f"pytest_worker_utils-{VERSION}-py3-none-any.whl"
# The demo runs on the embedded servers, as `make demo` does.
SERVER_VARIABLES = ("WORKER_UTILS_POSTGRES_URL", "WORKER_UTILS_REDIS_URL")


def run(*args: str | Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        [str(arg) for arg in args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert result.returncode == 0, (
        f"{args} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    )
    return result.stdout


def build() -> str:
    """Build from a copy of the checkout's files (what git would commit), leaving it untouched."""
    files = run("git", "ls-files", "--cached", "--others", "--exclude-standard", "-z", cwd=ROOT)
    source = worker_utils.run_tmp_path() / "source"
    for name in filter(None, files.split("\0")):
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    out = worker_utils.run_tmp_path() / "dist"
    # The sdist, then the wheel built from the unpacked sdist, as a release builds them.
    run(sys.executable, "-m", "build", "--outdir", out, source, cwd=source)
    return str(out)


@pytest.fixture(scope="module")
def dist() -> Path:
    """The distributions, built once for every worker of the run."""
    return Path(worker_utils.run_once("release-dist", build))


def test_build_makes_one_sdist_and_one_pure_wheel_of_the_version(dist: Path) -> None:
    assert sorted(path.name for path in dist.iterdir()) == [WHEEL, SDIST]


def test_the_wheel_metadata_has_the_version_and_classifiers(dist: Path) -> None:
    with zipfile.ZipFile(dist / WHEEL) as wheel:
        names = wheel.namelist()
        metadata = HeaderParser().parsestr(
            wheel.read(f"pytest_worker_utils-{VERSION}.dist-info/METADATA").decode()
        )
    assert metadata["Version"] == VERSION
    assert metadata["License-Expression"] == "MIT"
    assert metadata.get_all("Classifier") == PROJECT["classifiers"]
    assert f"pytest_worker_utils-{VERSION}.dist-info/licenses/LICENSE" in names
    assert "worker_utils/py.typed" in names
    # Only the package: no tests, examples or conftest.py on the user's sys.path.
    assert {name.split("/")[0] for name in names} == {
        "worker_utils",
        f"pytest_worker_utils-{VERSION}.dist-info",
    }


def test_the_sdist_carries_the_docs_the_demo_and_the_changelog(dist: Path) -> None:
    with tarfile.open(dist / SDIST) as sdist:
        names = {name.partition("/")[2] for name in sdist.getnames()}
    for name in ("CHANGELOG.md", "LICENSE", "README.md", "pyproject.toml"):
        assert name in names
    for directory in ("examples", "docs", "adr", "worker_utils"):
        assert any(name.startswith(f"{directory}/") for name in names), directory
    # No top-level module or package besides worker_utils (see MANIFEST.in), and no bytecode.
    top_level = {
        name.removesuffix(".py").removesuffix("/__init__")
        for name in names
        if (name.endswith(".py") and "/" not in name)
        or (name.count("/") == 1 and name.endswith("/__init__.py"))
    }
    assert top_level == {"worker_utils"}
    assert not [name for name in names if "__pycache__" in name]


def test_the_changelog_has_an_unreleased_section_first() -> None:
    headings = re.findall(r"^## (.+)$", (ROOT / "CHANGELOG.md").read_text(), re.MULTILINE)
    assert headings[0] == "Unreleased"


@pytest.mark.parametrize("artifact", [WHEEL, SDIST])
def test_it_installs_into_a_clean_venv_and_runs_the_demo(
    dist: Path, tmp_path: Path, artifact: str
) -> None:
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", venv, cwd=tmp_path)
    python = venv / "bin" / "python"
    run(
        python,
        "-m",
        "pip",
        "install",
        "--quiet",
        f"{dist / artifact}[postgres,redis]",
        cwd=tmp_path,
    )
    # The demo from the sdist, in a directory that holds nothing else importable.
    with tarfile.open(dist / SDIST) as sdist:
        sdist.extractall(tmp_path / "sdist", filter="data")
    demo = tmp_path / "demo"
    shutil.copytree(
        tmp_path / "sdist" / f"pytest_worker_utils-{VERSION}" / "examples", demo / "examples"
    )
    where = run(python, "-c", "import worker_utils; print(worker_utils.__file__)", cwd=demo)
    assert Path(where.strip()).is_relative_to(venv)
    assert run(venv / "bin" / "worker-utils", "--version", cwd=demo) == f"worker-utils {VERSION}\n"
    env = {key: value for key, value in os.environ.items() if key not in SERVER_VARIABLES}
    # The service example is a suite of its own, with its own pytest.ini.
    for suite in (["examples", "--ignore=examples/sandbox_service"], ["examples/sandbox_service"]):
        out = run(
            venv / "bin" / "pytest", *suite, "-n", "2", "-p", "no:cacheprovider", cwd=demo, env=env
        )
        assert re.search(r"^=+ \d+ passed in [\d.]+s", out, re.MULTILINE), out
