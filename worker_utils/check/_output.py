"""The checker's output formats: text, GitHub workflow annotations, JSON and SARIF 2.1.0."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import PurePath
from typing import Any

from worker_utils.check._base import RULES, Finding

__all__ = ["FORMATS", "STATISTICS_FORMATS", "render", "render_statistics"]

_SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"


def _text(findings: Sequence[Finding], version: str) -> str:
    return "".join(f"{finding.format()}\n" for finding in findings)


def _github(findings: Sequence[Finding], version: str) -> str:
    """One ``::error`` workflow command per finding, which GitHub shows on the changed line."""
    lines = []
    for finding in findings:
        properties = ",".join(
            f"{key}={_escape_property(str(value))}"
            for key, value in (
                ("file", finding.path),
                ("line", finding.line),
                ("col", finding.col),
                ("title", finding.code),
            )
        )
        lines.append(f"::error {properties}::{_escape_data(_text_of(finding))}\n")
    return "".join(lines)


def _json(findings: Sequence[Finding], version: str) -> str:
    """A list of objects shaped like ruff's JSON output (no fixes, no end location)."""
    objects = [
        {
            "code": finding.code,
            "filename": finding.path,
            "hint": finding.hint,
            "location": {"column": finding.col, "row": finding.line},
            "message": finding.message,
            "name": RULES[finding.code].name,
        }
        for finding in findings
    ]
    return json.dumps(objects, indent=2) + "\n"


def _sarif(findings: Sequence[Finding], version: str) -> str:
    """A SARIF 2.1.0 log with one run, whose driver describes the rules of the findings."""
    codes = sorted({finding.code for finding in findings})
    rules = [
        {
            "id": code,
            "name": RULES[code].name,
            "shortDescription": {"text": RULES[code].summary},
            "help": {"text": RULES[code].hint},
            "defaultConfiguration": {"level": "error"},
        }
        for code in codes
    ]
    results = [
        {
            "ruleId": finding.code,
            "ruleIndex": codes.index(finding.code),
            "level": "error",
            "message": {"text": _text_of(finding)},
            "locations": [
                {
                    "physicalLocation": {
                        "artifactLocation": _artifact(finding.path),
                        "region": {"startLine": finding.line, "startColumn": finding.col},
                    }
                }
            ],
        }
        for finding in findings
    ]
    driver = {"name": "worker-utils check", "version": version, "rules": rules}
    log = {
        "$schema": _SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [{"tool": {"driver": driver}, "results": results}],
    }
    return json.dumps(log, indent=2) + "\n"


_RENDERERS: dict[str, Callable[[Sequence[Finding], str], str]] = {
    "text": _text,
    "github": _github,
    "json": _json,
    "sarif": _sarif,
}
FORMATS = tuple(_RENDERERS)
STATISTICS_FORMATS = ("text", "json")


def render(findings: Sequence[Finding], output_format: str, version: str) -> str:
    """The findings in ``output_format`` (one of :data:`FORMATS`); ``version`` is the tool's."""
    return _RENDERERS[output_format](findings, version)


def render_statistics(findings: Sequence[Finding], output_format: str) -> str:
    """The number of findings per rule, most frequent first, as ruff's ``--statistics``."""
    counts = sorted(Counter(finding.code for finding in findings).items(), key=_by_count)
    if output_format == "json":
        objects = [{"code": code, "name": RULES[code].name, "count": n} for code, n in counts]
        return json.dumps(objects, indent=2) + "\n"
    width = max((len(str(count)) for _, count in counts), default=0)
    return "".join(f"{count:>{width}}\t{code}\t{RULES[code].name}\n" for code, count in counts)


def _by_count(item: tuple[str, int]) -> tuple[int, str]:
    return -item[1], item[0]


def _text_of(finding: Finding) -> str:
    return f"{finding.message} ({finding.hint})"


def _artifact(path: str) -> dict[str, Any]:
    """A relative path resolves against the checkout (``%SRCROOT%``); an absolute one is a URI."""
    pure = PurePath(path)
    if pure.is_absolute():
        return {"uri": pure.as_uri()}
    return {"uri": pure.as_posix(), "uriBaseId": "%SRCROOT%"}


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")
