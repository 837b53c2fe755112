"""Shared pieces of the checker: findings, the rule registry, noqa comments, the file context."""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field

__all__ = ["RULES", "Context", "Finding", "Rule", "is_port", "noqa_lines", "rule"]


@dataclass(frozen=True, order=True)
class Finding:
    """One problem at one place: ``path:line:col: CODE message (hint)``."""

    path: str
    line: int
    col: int
    code: str
    message: str
    hint: str

    def format(self) -> str:
        """Return the finding in the ``path:line:col: CODE message (hint)`` form."""
        return f"{self.path}:{self.line}:{self.col}: {self.code} {self.message} ({self.hint})"


@dataclass(frozen=True)
class Rule:
    """A rule: a stable code, a message template (``str.format`` fields) and a fix hint."""

    code: str
    message: str
    hint: str


RULES: dict[str, Rule] = {}


def rule(code: str, message: str, hint: str) -> Rule:
    """Register and return a rule; codes are unique."""
    if code in RULES:
        raise ValueError(f"rule code {code} is registered twice")
    RULES[code] = registered = Rule(code, message, hint)
    return registered


SYNTAX_ERROR = rule("WU000", "syntax error: {error}", "the file was not checked")
UNREADABLE = rule("WU001", "cannot read the file: {error}", "the file was not checked")

# flake8's form: "# noqa" silences every code on the line, "# noqa: A1, B2" only those.
_NOQA = re.compile(r"#\s*noqa(?::\s*(?P<codes>[A-Z]+[0-9]+(?:[\s,]+[A-Z]+[0-9]+)*))?", re.I)
_CODE = re.compile(r"[A-Z]+[0-9]+", re.I)


def noqa_lines(source: str) -> dict[int, frozenset[str] | None]:
    """Map each line number carrying a noqa comment to its codes (``None``: every code)."""
    if "noqa" not in source.lower():
        return {}
    found: dict[int, frozenset[str] | None] = {}
    for number, line in enumerate(source.splitlines(), start=1):
        match = _NOQA.search(line)
        if match:
            codes = match["codes"]
            found[number] = None if codes is None else frozenset(_CODE.findall(codes.upper()))
    return found


def is_port(node: ast.AST) -> bool:
    """Whether ``node`` is an integer literal that names a real TCP port (not 0)."""
    return isinstance(node, ast.Constant) and type(node.value) is int and 1 <= node.value <= 65535


@dataclass
class Context:
    """One parsed file as the rule families see it; families add findings through :meth:`report`."""

    path: str
    source: str
    tree: ast.Module
    is_conftest: bool
    findings: list[Finding] = field(default_factory=list)
    autouse: list[tuple[str, int, int]] = field(default_factory=list)
    _nodes: list[ast.AST] | None = None
    _aliases: dict[str, str] | None = None
    _docstrings: set[int] | None = None

    @property
    def nodes(self) -> list[ast.AST]:
        """Every node of the tree, walked once and shared by all families."""
        if self._nodes is None:
            self._nodes = list(ast.walk(self.tree))
        return self._nodes

    @property
    def aliases(self) -> dict[str, str]:
        """Local names bound by imports, mapped to the dotted names they stand for."""
        if self._aliases is None:
            self._aliases = {}
            for node in self.nodes:
                if isinstance(node, ast.Import):
                    for alias in node.names:
                        if alias.asname:
                            self._aliases[alias.asname] = alias.name
                elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    for alias in node.names:
                        local = alias.asname or alias.name
                        self._aliases[local] = f"{node.module}.{alias.name}"
        return self._aliases

    @property
    def docstrings(self) -> set[int]:
        """The ids of the string constants that are docstrings: prose, not code."""
        if self._docstrings is None:
            self._docstrings = set()
            for node in self.nodes:
                if isinstance(
                    node, ast.Module | ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef
                ):
                    first = node.body[0] if node.body else None
                    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                        self._docstrings.add(id(first.value))
        return self._docstrings

    def qualname(self, node: ast.AST) -> str | None:
        """Resolve ``os.environ``-like expressions to dotted names, through import aliases."""
        parts: list[str] = []
        while isinstance(node, ast.Attribute):
            parts.append(node.attr)
            node = node.value
        if not isinstance(node, ast.Name):
            return None
        parts.append(self.aliases.get(node.id, node.id))
        return ".".join(reversed(parts))

    def is_environ(self, node: ast.AST) -> bool:
        """Whether ``node`` is ``os.environ`` (also imported as ``environ`` or through an alias)."""
        return self.qualname(node) == "os.environ"

    def report(self, found: Rule, node: ast.AST, **details: object) -> None:
        """Record a finding of ``found`` at ``node``; ``details`` fill the message template."""
        self.findings.append(
            Finding(
                self.path,
                getattr(node, "lineno", 1),
                getattr(node, "col_offset", 0) + 1,
                found.code,
                found.message.format(**details),
                found.hint,
            )
        )
