"""``worker-utils check`` end to end: exit statuses, exact output, options and configuration."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
import tomllib

from worker_utils.check import RULES
from worker_utils.cli import main

ROOT = Path(__file__).parents[2]
ENV_WRITE = "import os\nos.environ['A'] = '1'\n"
TMP_PATH = "P = '/tmp/x'\n"  # noqa: WU401
ENV_WRITE_FINDING = (
    "test_env.py:2:1: WU101 os.environ item set outside monkeypatch (use monkeypatch.setenv())"
)
TMP_FINDING = (
    "test_tmp.py:1:5: WU401 fixed temporary path '/tmp/x' "  # noqa: WU401
    "(use tmp_path, worker_tmp_path or run_tmp_path)"
)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "test_env.py").write_text(ENV_WRITE)
    (tmp_path / "test_tmp.py").write_text(TMP_PATH)
    (tmp_path / "test_clean.py").write_text("def test_it(tmp_path):\n    assert tmp_path\n")
    return tmp_path


def run_module(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    return subprocess.run(
        [sys.executable, "-m", "worker_utils", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def test_it_prints_findings_like_ruff_and_exits_1_through_python_m(project: Path) -> None:
    result = run_module("check", cwd=project)
    assert (result.returncode, result.stderr) == (1, "")
    assert result.stdout.splitlines() == [
        ENV_WRITE_FINDING,
        TMP_FINDING,
        "Found 2 problems in 2 files (3 files checked)",
    ]


def test_it_exits_0_and_says_how_many_files_it_checked_when_clean(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check", "test_clean.py"]) == 0
    assert capsys.readouterr() == ("All checks passed: 1 file checked\n", "")


def test_it_says_so_when_no_path_given_is_a_test_file(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (project / "helpers.py").write_text(TMP_PATH)
    assert main(["check", "helpers.py"]) == 0
    assert capsys.readouterr() == (
        "All checks passed: 0 files checked (no file matches test-patterns)\n",
        "",
    )


def test_it_counts_the_files_with_problems_apart_from_the_problems(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (project / "test_env.py").write_text(ENV_WRITE + ENV_WRITE)
    assert main(["check"]) == 1
    assert capsys.readouterr().out.splitlines()[-1] == (
        "Found 3 problems in 2 files (3 files checked)"
    )


def test_it_prints_the_installed_version(capsys: pytest.CaptureFixture[str]) -> None:
    with (ROOT / "pyproject.toml").open("rb") as stream:
        version = tomllib.load(stream)["project"]["version"]
    assert main(["--version"]) == 0
    assert capsys.readouterr() == (f"worker-utils {version}\n", "")


def test_it_prints_an_unknown_version_when_the_distribution_is_not_installed(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def not_installed(name: str) -> str:
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "version", not_installed)
    assert main(["--version"]) == 0
    assert capsys.readouterr() == (
        "worker-utils unknown (pytest-worker-utils is not installed)\n",
        "",
    )


def test_it_prints_the_paths_as_given(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (project / "sub").mkdir()
    (project / "sub" / "test_deep.py").write_text(TMP_PATH)
    assert main(["check", "sub"]) == 1
    assert capsys.readouterr().out.splitlines()[0].startswith("sub/test_deep.py:1:5: WU401 ")


def test_it_counts_a_single_problem_in_the_singular(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check", "test_tmp.py"]) == 1
    assert capsys.readouterr().out.splitlines() == [
        TMP_FINDING,
        "Found 1 problem in 1 file (1 file checked)",
    ]


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (["--select", "WU1"], [ENV_WRITE_FINDING]),
        (["--select", "wu401"], [TMP_FINDING]),
        (["--ignore", "WU101,WU4"], []),
        (["--select", "WU4,WU1", "--ignore", "WU1"], [TMP_FINDING]),
    ],
)
def test_it_selects_and_ignores_codes_and_prefixes(
    project: Path, capsys: pytest.CaptureFixture[str], options: list[str], expected: list[str]
) -> None:
    assert main(["check", *options]) == (1 if expected else 0)
    assert capsys.readouterr().out.splitlines()[:-1] == expected


@pytest.mark.parametrize("option", ["--select", "--ignore"])
def test_it_rejects_an_unknown_code_as_a_usage_error(
    project: Path, capsys: pytest.CaptureFixture[str], option: str
) -> None:
    assert main(["check", option, "WU1,XY9"]) == 2
    assert capsys.readouterr() == (
        "",
        f"worker-utils check: error: {option}: unknown rule code or prefix 'XY9'; "
        "run 'worker-utils check --list-rules' to see them\n",
    )


def test_it_rejects_a_missing_path_as_a_usage_error(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check", "nowhere"]) == 2
    assert capsys.readouterr().err == (
        "worker-utils check: error: nowhere: no such file or directory; check the path\n"
    )


def test_it_reports_an_unknown_option_with_the_usage(project: Path) -> None:
    result = run_module("check", "--frobnicate", cwd=project)
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == (
        "worker-utils: error: unrecognized arguments: --frobnicate"
    )


def test_it_requires_a_command(project: Path) -> None:
    result = run_module(cwd=project)
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == (
        "worker-utils: error: the following arguments are required: COMMAND"
    )


def test_it_returns_0_for_help(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--help"]) == 0
    assert capsys.readouterr().out.startswith("usage: worker-utils check [-h]")


def test_it_reports_a_syntax_error_checks_the_other_files_and_exits_2(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (project / "test_broken.py").write_text("def broken(:\n    pass\n")
    assert main(["check"]) == 2
    assert capsys.readouterr().out.splitlines() == [
        "test_broken.py:1:12: WU000 syntax error: invalid syntax (the file was not checked)",
        ENV_WRITE_FINDING,
        TMP_FINDING,
        "Found 3 problems in 3 files (4 files checked)",
    ]


def test_it_honours_noqa_comments(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (project / "test_env.py").write_text(ENV_WRITE.replace("'1'\n", "'1'  # noqa: WU101\n"))
    (project / "test_tmp.py").write_text(TMP_PATH.replace("\n", "  # noqa\n"))
    assert main(["check"]) == 0
    assert capsys.readouterr().out == "All checks passed: 3 files checked\n"


def test_it_skips_files_that_are_not_tests_and_hidden_or_virtualenv_directories(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (project / "helpers.py").write_text(TMP_PATH)
    for directory in (".venv", ".hidden", "node_modules", "__pycache__"):
        (project / directory).mkdir()
        (project / directory / "test_x.py").write_text(TMP_PATH)
    assert main(["check", "helpers.py", "test_tmp.py", "."]) == 1
    assert capsys.readouterr().out.splitlines() == [
        ENV_WRITE_FINDING,
        TMP_FINDING,
        "Found 2 problems in 2 files (3 files checked)",
    ]


def test_it_reads_its_configuration_from_pyproject(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (project / "pyproject.toml").write_text(
        "[tool.worker_utils]\n"
        'ignore = ["WU1"]\n'
        'test-patterns = ["check_*.py", "tests/*.py"]\n'
        'exclude = ["generated", "tests/old_*.py"]\n'
    )
    for name in ("check_a.py", "generated/check_b.py", "tests/helpers.py", "tests/old_c.py"):
        (project / name).parent.mkdir(exist_ok=True)
        (project / name).write_text(ENV_WRITE + TMP_PATH)
    assert main(["check"]) == 1
    assert capsys.readouterr().out.splitlines() == [
        "check_a.py:3:5: WU401 fixed temporary path '/tmp/x' "  # noqa: WU401
        "(use tmp_path, worker_tmp_path or run_tmp_path)",
        "tests/helpers.py:3:5: WU401 fixed temporary path '/tmp/x' "  # noqa: WU401
        "(use tmp_path, worker_tmp_path or run_tmp_path)",
        "Found 2 problems in 2 files (2 files checked)",
    ]


def test_it_finds_pyproject_in_a_parent_directory(
    project: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (project / "pyproject.toml").write_text('[tool.worker_utils]\nselect = ["WU4"]\n')
    (project / "sub").mkdir()
    monkeypatch.chdir(project / "sub")
    assert main(["check", ".."]) == 1
    assert capsys.readouterr().out.splitlines()[0] == "../" + TMP_FINDING


def test_it_lets_the_command_line_select_over_the_configuration(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (project / "pyproject.toml").write_text('[tool.worker_utils]\nselect = ["WU4"]\n')
    assert main(["check", "--select", "WU1"]) == 1
    assert capsys.readouterr().out.splitlines()[:-1] == [ENV_WRITE_FINDING]


def test_it_ignores_the_configuration_when_isolated(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (project / "pyproject.toml").write_text('[tool.worker_utils]\nselect = ["WU4"]\n')
    assert main(["check", "--isolated"]) == 1
    assert capsys.readouterr().out.splitlines()[:-1] == [ENV_WRITE_FINDING, TMP_FINDING]


def test_it_reads_an_explicit_config_file(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (project / "other.toml").write_text('[tool.worker_utils]\nselect = ["WU1"]\n')
    assert main(["check", "--config", "other.toml"]) == 1
    assert capsys.readouterr().out.splitlines()[:-1] == [ENV_WRITE_FINDING]


@pytest.mark.parametrize(
    ("table", "error"),
    [
        (
            'selct = ["WU1"]',
            "pyproject.toml [tool.worker_utils]: unknown key 'selct'; "
            "expected one of select, ignore, per-file-ignores, test-patterns, exclude",
        ),
        (
            'select = "WU1"',
            "pyproject.toml [tool.worker_utils]: select must be a list of strings, found 'WU1'; "
            'write select = ["WU1"]',
        ),
        (
            'exclude = ["build", 3]',
            "pyproject.toml [tool.worker_utils]: exclude must be a list of strings, "
            "found ['build', 3]",
        ),
        (
            'ignore = ["WU7"]',
            "pyproject.toml [tool.worker_utils] ignore: unknown rule code or prefix 'WU7'; "
            "run 'worker-utils check --list-rules' to see them",
        ),
        (
            'per-file-ignores = ["WU6"]',
            "pyproject.toml [tool.worker_utils]: per-file-ignores must be a table of patterns "
            "and code lists, found ['WU6']; "
            'write per-file-ignores = {"tests/legacy/*" = ["WU6"]}',
        ),
        (
            'per-file-ignores = {"tests/*" = "WU6,WU4"}',
            "pyproject.toml [tool.worker_utils]: per-file-ignores 'tests/*' must be a list of "
            """strings, found 'WU6,WU4'; write "tests/*" = ["WU6", "WU4"]""",
        ),
        (
            'per-file-ignores = {"tests/*" = ["WU9"]}',
            "pyproject.toml [tool.worker_utils] per-file-ignores 'tests/*': unknown rule code "
            "or prefix 'WU9'; run 'worker-utils check --list-rules' to see them",
        ),
    ],
)
def test_it_rejects_a_bad_configuration_as_a_usage_error(
    project: Path, capsys: pytest.CaptureFixture[str], table: str, error: str
) -> None:
    (project / "pyproject.toml").write_text(f"[tool.worker_utils]\n{table}\n")
    assert main(["check", "--config", "pyproject.toml"]) == 2
    assert capsys.readouterr().err == f"worker-utils check: error: {error}\n"


def test_it_rejects_invalid_toml(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (project / "pyproject.toml").write_text("[tool.worker_utils]\nselect = [\n")
    assert main(["check"]) == 2
    assert capsys.readouterr().err.startswith(
        f"worker-utils check: error: {project / 'pyproject.toml'}: invalid TOML: "
    )


def test_it_rejects_a_missing_config_file(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check", "--config", "missing.toml"]) == 2
    assert capsys.readouterr().err == (
        "worker-utils check: error: --config: missing.toml is not a file; give a pyproject.toml\n"
    )


def test_it_lists_every_rule_in_code_order(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--list-rules"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == sorted(RULES)
    assert lines[1] == "WU001 cannot read the file: {error} (the file was not checked)"


def test_it_rejects_a_tool_worker_utils_value_that_is_not_a_table(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (project / "pyproject.toml").write_text('[tool]\nworker_utils = "WU1"\n')
    assert main(["check", "--config", "pyproject.toml"]) == 2
    assert capsys.readouterr().err == (
        "worker-utils check: error: pyproject.toml [tool.worker_utils]: must be a table, "
        "found 'WU1'; write [tool.worker_utils]\n"
    )


def test_it_rejects_a_configuration_that_is_not_utf8(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (project / "pyproject.toml").write_bytes(b'[tool.worker_utils]\nselect = ["WU1"] # \xff\n')
    assert main(["check"]) == 2
    assert capsys.readouterr().err == (
        f"worker-utils check: error: {project / 'pyproject.toml'}: not UTF-8 "
        "(invalid start byte); save it as UTF-8\n"
    )


def test_it_ignores_codes_per_file_pattern(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (project / "pyproject.toml").write_text(
        '[tool.worker_utils.per-file-ignores]\n"legacy/*" = ["WU1"]\n"test_tmp.py" = ["WU4"]\n'
    )
    (project / "legacy").mkdir()
    (project / "legacy" / "test_old.py").write_text(ENV_WRITE + TMP_PATH)
    assert main(["check"]) == 1
    assert capsys.readouterr().out.splitlines() == [
        "legacy/test_old.py:3:5: WU401 fixed temporary path '/tmp/x' "  # noqa: WU401
        "(use tmp_path, worker_tmp_path or run_tmp_path)",
        ENV_WRITE_FINDING,
        "Found 2 problems in 2 files (4 files checked)",
    ]
