"""Shared pieces of the checker: findings, the rule registry, noqa comments, the file context."""

from __future__ import annotations

import ast
import io
import re
import tokenize
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, TypeVar

__all__ = [
    "RULES",
    "Autouse",
    "Context",
    "Finding",
    "Rule",
    "is_port",
    "noqa_lines",
    "rule",
    "split_lines",
]

_Node = TypeVar("_Node", bound=ast.AST)


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
    """A rule: a stable code, a message template (``str.format`` fields) and a fix hint.

    ``name`` is the rule's kebab-case name and ``summary`` one sentence on why
    it matters, for statistics and machine-readable reports.
    """

    code: str
    message: str
    hint: str
    name: str
    summary: str


RULES: dict[str, Rule] = {}


def rule(code: str, message: str, hint: str, *, name: str, summary: str) -> Rule:
    """Register and return a rule; codes and names are unique."""
    if code in RULES or any(known.name == name for known in RULES.values()):
        raise ValueError(f"rule {code} {name} is registered twice")
    RULES[code] = registered = Rule(code, message, hint, name, summary)
    return registered


SYNTAX_ERROR = rule(
    "WU000",
    "syntax error: {error}",
    "the file was not checked",
    name="syntax-error",
    summary="A file that does not parse, so nothing in it was checked.",
)
UNREADABLE = rule(
    "WU001",
    "cannot read the file: {error}",
    "the file was not checked",
    name="unreadable-file",
    summary="A file that could not be read, so nothing in it was checked.",
)

# The flake8 form: a bare noqa comment silences every code on the line, "noqa: A1, B2" only those.
# Unlike flake8, a colon followed by no valid code ("noqa: WU-101") silences nothing, and a space
# before the colon ("noqa : WU101") still reads as a list: a typo never silences every code.
_NOQA = re.compile(r"#\s*noqa\b(?P<colon>\s*:)?", re.I)
_CODES = re.compile(r"\s*([A-Z]+[0-9]+(?:[\s,]+[A-Z]+[0-9]+)*)", re.I)
_CODE = re.compile(r"[A-Z]+[0-9]+", re.I)
# The line breaks of ast and tokenize; str.splitlines() also splits on \x0c, \x85, U+2028...
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def split_lines(text: str) -> list[str]:
    """The lines of ``text`` as :mod:`ast` numbers them: only \\n, \\r\\n and \\r end a line."""
    return _LINE_BREAK.split(text)


def noqa_lines(source: str) -> dict[int, frozenset[str] | None]:
    """Map each line number carrying a noqa comment to its codes (``None``: every code).

    Only comments count: a noqa inside a string literal is text.
    """
    if "noqa" not in source.lower():
        return {}
    found: dict[int, frozenset[str] | None] = {}
    # newline=None: readline ends a line at \n, \r\n or \r, as ast does.
    readline = io.StringIO(source, newline=None).readline
    try:
        for token in tokenize.generate_tokens(readline):
            if token.type == tokenize.COMMENT and "noqa" in token.string.lower():
                codes = _noqa_codes(token.string)
                if codes is not None:
                    found[token.start[0]] = codes or None
    except (tokenize.TokenError, SyntaxError):
        pass  # the comments before the error still count
    return found


def _noqa_codes(comment: str) -> frozenset[str] | None:
    """The codes a noqa comment names (empty: every code), or None when it silences nothing."""
    match = _NOQA.search(comment)
    if match is None:
        return None
    if match["colon"] is None:
        return frozenset()
    codes = _CODES.match(comment, match.end())
    if codes is None:
        return None
    return frozenset(_CODE.findall(codes[1].upper()))


def is_port(node: ast.AST) -> bool:
    """Whether ``node`` is an integer literal that names a real TCP port (not 0)."""
    return isinstance(node, ast.Constant) and type(node.value) is int and 1 <= node.value <= 65535


class Autouse(NamedTuple):
    """An autouse fixture definition: its name, where it is, and the classes around it."""

    name: str
    line: int
    col: int
    classes: tuple[str, ...]


@dataclass
class Context:
    """One parsed file as the rule families see it; families add findings through :meth:`report`."""

    path: str
    source: str
    tree: ast.Module
    is_conftest: bool
    lines: Sequence[int] | None = None
    findings: list[Finding] = field(default_factory=list)
    autouse: list[Autouse] = field(default_factory=list)
    _index: dict[type[ast.AST], list[ast.AST]] | None = None
    _aliases: dict[str, str] | None = None
    _docstrings: set[int] | None = None
    _lines: list[str] | None = None

    def of(self, kind: type[_Node]) -> list[_Node]:
        """The nodes of the given types, from one walk of the tree shared by all families.

        Statements that span none of ``lines`` (the lines where some family's
        markers occur) are not walked, imports excepted: on a typical test file
        that skips most of the tree, and walking is what costs.
        """
        if self._index is None:
            self._index = _index(self.tree, self.lines)
        return self._index.get(kind, [])  # type: ignore[return-value]

    @property
    def aliases(self) -> dict[str, str]:
        """Local names bound by imports, mapped to the dotted names they stand for."""
        if self._aliases is None:
            self._aliases = {}
            for node in self.of(ast.Import):
                for alias in node.names:
                    if alias.asname:
                        self._aliases[alias.asname] = alias.name
            for imported in self.of(ast.ImportFrom):
                if imported.module and not imported.level:
                    for alias in imported.names:
                        local = alias.asname or alias.name
                        self._aliases[local] = f"{imported.module}.{alias.name}"
        return self._aliases

    @property
    def docstrings(self) -> set[int]:
        """The ids of the string constants that are docstrings: prose, not code."""
        if self._docstrings is None:
            self._docstrings = set()
            bodies = [node.body for node in self.of(ast.Module)]
            bodies += [node.body for node in self.of(ast.FunctionDef)]
            bodies += [node.body for node in self.of(ast.AsyncFunctionDef)]
            bodies += [node.body for node in self.of(ast.ClassDef)]
            for body in bodies:
                first = body[0] if body else None
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
        """Whether ``node`` is ``os.environ`` or ``os.environb`` (also imported or aliased)."""
        return self.qualname(node) in ("os.environ", "os.environb")

    def column(self, node: ast.AST) -> int:
        """The 1-based column of ``node`` in characters (``col_offset`` counts UTF-8 bytes)."""
        offset = getattr(node, "col_offset", 0)
        if offset == 0 or self.source.isascii():
            return offset + 1
        if self._lines is None:
            self._lines = split_lines(self.source)
        line = self._lines[getattr(node, "lineno", 1) - 1]
        return len(line.encode(errors="surrogatepass")[:offset].decode(errors="ignore")) + 1

    def report(
        self, found: Rule, node: ast.AST, *, hint: str | None = None, **details: object
    ) -> None:
        """Record a finding of ``found`` at ``node``; ``details`` fill the message template.

        ``hint`` replaces the rule's own where a finding calls for a more precise fix.
        """
        self.findings.append(
            Finding(
                self.path,
                getattr(node, "lineno", 1),
                self.column(node),
                found.code,
                found.message.format(**details),
                hint or found.hint,
            )
        )


def _index(tree: ast.AST, lines: Sequence[int] | None) -> dict[type[ast.AST], list[ast.AST]]:
    """Group the nodes of ``tree`` by type, skipping statements that span none of ``lines``."""
    index: dict[type[ast.AST], list[ast.AST]] = {}
    stack = [tree]
    while stack:
        node = stack.pop()
        kind = type(node)
        bucket = index.get(kind)
        if bucket is None:
            index[kind] = [node]
        else:
            bucket.append(node)
        for name in _fields(kind):
            value = getattr(node, name, None)
            if type(value) is list:
                for item in value:
                    if isinstance(item, ast.stmt):
                        if lines is None or _spans(item, lines):
                            stack.append(item)
                    elif isinstance(item, ast.AST):
                        stack.append(item)
            elif isinstance(value, ast.AST):
                stack.append(value)
    return index


_FIELDS: dict[type[ast.AST], tuple[str, ...]] = {}


def _fields(kind: type[ast.AST]) -> tuple[str, ...]:
    """The fields of a node type that may hold nodes (``ctx`` is always Load/Store/Del)."""
    fields = _FIELDS.get(kind)
    if fields is None:
        fields = _FIELDS[kind] = tuple(name for name in kind._fields if name != "ctx")
    return fields


def _spans(statement: ast.stmt, lines: Sequence[int]) -> bool:
    if isinstance(statement, ast.Import | ast.ImportFrom):
        return True
    start = statement.lineno
    for decorator in getattr(statement, "decorator_list", ()):
        start = min(start, decorator.lineno)
    end = statement.end_lineno or start
    position = bisect_left(lines, start)
    return position < len(lines) and lines[position] <= end
