"""The pre-commit hook through the pre-commit framework itself, as a user's repository runs it.

``pre-commit try-repo`` clones this repository (with uncommitted changes, as a
shadow commit), pip-installs it into the hook's own virtual environment and
runs the hook on the files given. Marked ``release``: the install takes some
15 seconds a run, so ``make dist-check`` runs it as a separate CI step.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.release

ROOT = Path(__file__).parents[2]
BAD = "import os\n\n\ndef test_debug():\n    os.environ['APP_DEBUG'] = '1'\n"
GOOD = "def test_debug(monkeypatch):\n    monkeypatch.setenv('APP_DEBUG', '1')\n"


@pytest.fixture
def user_repo(tmp_path: Path) -> Path:
    """A throwaway git repository with a bad and a good test file and a helper module."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("pre-commit try-repo needs git and this checkout as a git repository")
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "test_bad.py").write_text(BAD)
    (repo / "test_good.py").write_text(GOOD)
    (repo / "app.py").write_text(BAD)
    subprocess.run(["git", "init", "--quiet", str(repo)], check=True)
    subprocess.run(["git", "-C", str(repo), "add", "."], check=True)
    return repo


def try_repo(repo: Path, *files: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        # A private store: nothing is reused from, or left in, ~/.cache/pre-commit.
        "PRE_COMMIT_HOME": str(repo.parent / "pre-commit-home"),
        "PRE_COMMIT_COLOR": "never",
    }
    command = [sys.executable, "-m", "pre_commit", "try-repo", str(ROOT), "worker-utils-check"]
    return subprocess.run(
        [*command, "--files", *files],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )


def hook_output(result: subprocess.CompletedProcess[str]) -> list[str]:
    """The lines from the hook's status line on, without the config try-repo prints first."""
    lines = result.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("worker-utils check."))
    return [line for line in lines[start:] if line]


def test_the_hook_fails_on_the_bad_file_and_prints_the_finding(user_repo: Path) -> None:
    result = try_repo(user_repo, "test_bad.py", "test_good.py", "app.py")
    assert result.returncode == 1, result.stdout + result.stderr
    assert hook_output(result) == [
        "worker-utils check" + "." * 55 + "Failed",
        "- hook id: worker-utils-check",
        "- exit code: 1",
        "test_bad.py:5:5: WU101 os.environ item set outside monkeypatch (use monkeypatch.setenv())",
        "Found 1 problem in 1 file (2 files checked)",
    ]


def test_the_hook_passes_on_the_good_file(user_repo: Path) -> None:
    result = try_repo(user_repo, "test_good.py", "app.py")
    assert result.returncode == 0, result.stdout + result.stderr
    assert hook_output(result) == ["worker-utils check" + "." * 55 + "Passed"]
