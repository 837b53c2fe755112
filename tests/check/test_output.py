"""``worker-utils check`` output formats, statistics and exit statuses, on the exact output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from worker_utils.cli import main, version

ENV_WRITE = "import os\nos.environ['A'] = '1'\nos.environ['B'] = '2'\n"
# A comma, a colon and a percent sign in the message: the annotation must escape them.
TMP_PATH = "P = '/tmp/a,b:c%d'\n"  # noqa: WU401
TMP_ANNOTATION = "fixed temporary path '/tmp/a,b:c%25d' "  # noqa: WU401


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "test_env.py").write_text(ENV_WRITE)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "test_tmp.py").write_text(TMP_PATH)
    (tmp_path / "test_clean.py").write_text("def test_it(tmp_path):\n    assert tmp_path\n")
    return tmp_path


def check(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    status = main(["check", *args])
    out, err = capsys.readouterr()
    assert err == ""
    return status, out


def test_it_prints_github_workflow_annotations(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert check(capsys, "--output-format", "github") == (
        1,
        "::error file=sub/test_tmp.py,line=1,col=5,title=WU401::"
        f"{TMP_ANNOTATION}(use tmp_path, worker_tmp_path or run_tmp_path)\n"
        "::error file=test_env.py,line=2,col=1,title=WU101::"
        "os.environ item set outside monkeypatch (use monkeypatch.setenv())\n"
        "::error file=test_env.py,line=3,col=1,title=WU101::"
        "os.environ item set outside monkeypatch (use monkeypatch.setenv())\n",
    )


def test_it_escapes_commas_and_colons_in_github_annotation_properties(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (project / "a,b:c").mkdir()
    (project / "a,b:c" / "test_x.py").write_text(ENV_WRITE)
    status, out = check(capsys, "--output-format", "github", "a,b:c")
    assert (status, out.splitlines()[0]) == (
        1,
        "::error file=a%2Cb%3Ac/test_x.py,line=2,col=1,title=WU101::"
        "os.environ item set outside monkeypatch (use monkeypatch.setenv())",
    )


def test_it_prints_a_json_list_like_ruff(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert check(capsys, "--output-format", "json", "test_env.py") == (
        1,
        """\
[
  {
    "code": "WU101",
    "filename": "test_env.py",
    "hint": "use monkeypatch.setenv()",
    "location": {
      "column": 1,
      "row": 2
    },
    "message": "os.environ item set outside monkeypatch",
    "name": "environ-item-set"
  },
  {
    "code": "WU101",
    "filename": "test_env.py",
    "hint": "use monkeypatch.setenv()",
    "location": {
      "column": 1,
      "row": 3
    },
    "message": "os.environ item set outside monkeypatch",
    "name": "environ-item-set"
  }
]
""",
    )


@pytest.mark.parametrize(("output_format", "empty"), [("json", "[]\n"), ("github", "")])
def test_it_prints_no_summary_line_in_machine_formats(
    project: Path, capsys: pytest.CaptureFixture[str], output_format: str, empty: str
) -> None:
    assert check(capsys, "--output-format", output_format, "test_clean.py") == (0, empty)


def sarif_result(code: str, index: int, text: str, uri: str, line: int, col: int) -> object:
    return {
        "ruleId": code,
        "ruleIndex": index,
        "level": "error",
        "message": {"text": text},
        "locations": [
            {
                "physicalLocation": {
                    "artifactLocation": {"uri": uri, "uriBaseId": "%SRCROOT%"},
                    "region": {"startLine": line, "startColumn": col},
                }
            }
        ],
    }


def test_it_prints_a_sarif_log_with_the_rules_of_its_results(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env_text = "os.environ item set outside monkeypatch (use monkeypatch.setenv())"
    # Unlike an annotation, the SARIF text needs no escaping.
    tmp_text = (
        TMP_ANNOTATION.replace("%25", "%") + "(use tmp_path, worker_tmp_path or run_tmp_path)"
    )
    expected = {
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "worker-utils check",
                        "version": version(),
                        "rules": [
                            {
                                "id": "WU101",
                                "name": "environ-item-set",
                                "shortDescription": {
                                    "text": "An os.environ item set by hand leaks into every "
                                    "later test on the worker."
                                },
                                "help": {"text": "use monkeypatch.setenv()"},
                                "defaultConfiguration": {"level": "error"},
                            },
                            {
                                "id": "WU401",
                                "name": "fixed-tmp-path",
                                "shortDescription": {
                                    "text": "A fixed path under /tmp shared by every worker "  # noqa: WU401
                                    "and every concurrent run."
                                },
                                "help": {"text": "use tmp_path, worker_tmp_path or run_tmp_path"},
                                "defaultConfiguration": {"level": "error"},
                            },
                        ],
                    }
                },
                "results": [
                    sarif_result("WU401", 1, tmp_text, "sub/test_tmp.py", 1, 5),
                    sarif_result("WU101", 0, env_text, "test_env.py", 2, 1),
                    sarif_result("WU101", 0, env_text, "test_env.py", 3, 1),
                ],
            }
        ],
    }
    # The exact text: the log pretty-printed with two-space indents, keys in this order.
    assert check(capsys, "--output-format", "sarif") == (1, json.dumps(expected, indent=2) + "\n")


def test_it_names_absolute_paths_by_file_uri_in_sarif(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, out = check(capsys, "--output-format", "sarif", str(project / "test_env.py"))
    [result, _] = json.loads(out)["runs"][0]["results"]
    assert result["locations"][0]["physicalLocation"]["artifactLocation"] == {
        "uri": (project / "test_env.py").as_uri()
    }


def test_it_prints_an_empty_sarif_run_when_clean(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out = check(capsys, "--output-format", "sarif", "test_clean.py")
    assert status == 0
    assert json.loads(out)["runs"] == [
        {"tool": {"driver": {"name": "worker-utils check", "version": version(), "rules": []}},
         "results": []}
    ]  # fmt: skip


def test_it_prints_ruff_style_statistics_instead_of_the_findings(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert check(capsys, "--statistics") == (
        1,
        "2\tWU101\tenviron-item-set\n"
        "1\tWU401\tfixed-tmp-path\n"
        "Found 3 problems in 2 files (3 files checked)\n",
    )


def test_it_prints_statistics_as_json(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out = check(capsys, "--statistics", "--output-format", "json")
    assert (status, json.loads(out)) == (
        1,
        [
            {"code": "WU101", "name": "environ-item-set", "count": 2},
            {"code": "WU401", "name": "fixed-tmp-path", "count": 1},
        ],
    )


def test_it_pads_the_counts_of_statistics_to_one_width(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (project / "test_env.py").write_text("import os\n" + "os.environ['A'] = '1'\n" * 10)
    assert check(capsys, "--statistics")[1].splitlines()[:2] == [
        "10\tWU101\tenviron-item-set",
        " 1\tWU401\tfixed-tmp-path",
    ]


@pytest.mark.parametrize("output_format", ["text", "github", "json", "sarif"])
def test_exit_zero_reports_the_findings_and_exits_0(
    project: Path, capsys: pytest.CaptureFixture[str], output_format: str
) -> None:
    status, out = check(capsys, "--exit-zero", "--output-format", output_format)
    assert status == 0
    assert out.count("WU101") >= 2


def test_exit_zero_covers_files_that_do_not_parse(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (project / "test_broken.py").write_text("def broken(:\n")
    assert check(capsys, "--exit-zero", "test_broken.py") == (
        0,
        "test_broken.py:1:12: WU000 syntax error: invalid syntax (the file was not checked)\n"
        "Found 1 problem in 1 file (1 file checked)\n",
    )


def test_exit_zero_still_exits_2_on_a_usage_error(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check", "--exit-zero", "nowhere"]) == 2
    assert capsys.readouterr().err == (
        "worker-utils check: error: nowhere: no such file or directory; check the path\n"
    )


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (
            ["--output-format", "xml"],
            "--output-format: unknown format 'xml'; use one of text, github, json, sarif",
        ),
        (
            ["--statistics", "--output-format", "github"],
            "--statistics: not available with --output-format github; use text or json",
        ),
        (
            ["--statistics", "--output-format", "sarif"],
            "--statistics: not available with --output-format sarif; use text or json",
        ),
    ],
)
def test_it_rejects_an_unknown_format_or_statistics_it_cannot_print(
    project: Path, capsys: pytest.CaptureFixture[str], args: list[str], error: str
) -> None:
    assert main(["check", *args]) == 2
    assert capsys.readouterr() == ("", f"worker-utils check: error: {error}\n")
