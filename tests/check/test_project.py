"""The checker against the project itself: its docs, its pre-commit hook and its own tests."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import tomllib

from worker_utils.check import RULES, check_paths
from worker_utils.check._config import _KEYS, load_settings

ROOT = Path(__file__).parents[2]


def test_every_rule_has_a_section_in_the_docs() -> None:
    docs = (ROOT / "docs" / "checker.md").read_text()
    headings = set(re.findall(r"^#+ .*?\b(WU\d{3})\b", docs, re.MULTILINE))
    assert headings == set(RULES)


def test_every_configuration_key_is_documented() -> None:
    docs = (ROOT / "docs" / "checker.md").read_text()
    assert [key for key in _KEYS if f"`{key}`" not in docs] == []


def test_the_project_passes_its_own_checker() -> None:
    places = [ROOT / name for name in ("tests", "conftest.py", "examples", "benchmarks")]
    # The corpus and the pytester example projects are bad on purpose (see pyproject.toml).
    settings = load_settings(ROOT / "pyproject.toml")
    findings = check_paths([place for place in places if place.exists()], settings)
    assert [finding.format() for finding in findings] == []


def read_hooks(text: str) -> list[dict[str, str]]:
    """Read the flat list of mappings that .pre-commit-hooks.yaml is, without PyYAML."""
    hooks: list[dict[str, str]] = []
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if line.startswith("- "):
            hooks.append({})
            line = line[2:]
        key, _, value = line.strip().partition(":")
        hooks[-1][key.strip()] = value.strip()
    return hooks


def entry_command(entry: str) -> list[str]:
    """The command pre-commit would run, through this interpreter's console script or -m."""
    program, *args = shlex.split(entry)
    scripts = pyproject()["project"]["scripts"]
    assert scripts[program] == "worker_utils.cli:main"
    script = Path(sys.executable).parent / program
    if script.exists():
        return [str(script), *args]
    return [sys.executable, "-m", "worker_utils", *args]


def pyproject() -> dict[str, dict[str, dict[str, str]]]:
    with (ROOT / "pyproject.toml").open("rb") as stream:
        return tomllib.load(stream)


def test_the_pre_commit_hook_runs_the_checker_on_the_files_it_is_given(tmp_path: Path) -> None:
    [hook] = read_hooks((ROOT / ".pre-commit-hooks.yaml").read_text())
    assert {key: hook[key] for key in ("id", "language", "types")} == {
        "id": "worker-utils-check",
        "language": "python",
        "types": "[python]",
    }
    (tmp_path / "test_app.py").write_text("import os\nos.environ['A'] = '1'\n")
    (tmp_path / "app.py").write_text("import os\nos.environ['A'] = '1'\n")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    result = subprocess.run(
        [*entry_command(hook["entry"]), "app.py", "test_app.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert (result.returncode, result.stderr) == (1, "")
    assert result.stdout.splitlines() == [
        "test_app.py:2:1: WU101 os.environ item set outside monkeypatch (use monkeypatch.setenv())",
        "Found 1 problem in 1 file (1 file checked)",
    ]


def test_the_pre_commit_hook_passes_when_only_non_test_files_are_given(tmp_path: Path) -> None:
    [hook] = read_hooks((ROOT / ".pre-commit-hooks.yaml").read_text())
    (tmp_path / "app.py").write_text("import os\nos.environ['A'] = '1'\n")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    result = subprocess.run(
        [*entry_command(hook["entry"]), "app.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert (result.returncode, result.stderr, result.stdout) == (
        0,
        "",
        "All checks passed: 0 files checked (no file matches test-patterns)\n",
    )
