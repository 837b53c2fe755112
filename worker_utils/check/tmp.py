"""Rules WU4xx: fixed temporary paths.

Every worker (and every concurrent run on the host) sees the same ``/tmp/x``:
two of them write the same file, one deletes what the other still reads.
"""

from __future__ import annotations

import ast
import re

from worker_utils.check._base import Context, rule

__all__ = ["MARKERS", "RULES", "WHOLE_FILE", "check"]

FIXED_PATH = rule(
    "WU401",
    "fixed temporary path {path!r}",
    "use tmp_path, worker_tmp_path or run_tmp_path",
    name="fixed-tmp-path",
    summary="A fixed path under /tmp shared by every worker and every concurrent run.",
)
RULES = (FIXED_PATH,)

# A path starts the string, a word of a shell command, a value (=, :) or a file:// URL.
_TMP = re.compile(
    r"(?:^|(?<=[\s='\"(:,])|(?<=//))(?:/var/tmp|/tmp|/dev/shm)(?:/[^\s'\"]*)?(?=$|[\s'\",)])"
)
MARKERS = ("/tmp", "/dev/shm")
_TEMPFILE_FUNCTIONS = frozenset(
    {
        "mkdtemp",
        "mkstemp",
        "NamedTemporaryFile",
        "SpooledTemporaryFile",
        "TemporaryDirectory",
        "TemporaryFile",
    }
)
_PREFIX_METHODS = frozenset({"startswith", "is_relative_to", "relative_to"})
WHOLE_FILE = False


def check(ctx: Context) -> None:
    """Report string literals naming a fixed path under ``/tmp``, ``/var/tmp`` or ``/dev/shm``."""
    if not any(marker in ctx.source for marker in MARKERS):
        return
    skipped = ctx.docstrings | _parents_and_prefixes(ctx)
    for node in ctx.of(ast.Constant):
        if isinstance(node.value, str) and id(node) not in skipped:
            match = _TMP.search(node.value)
            if match:
                ctx.report(FIXED_PATH, node, path=match[0])


def _parents_and_prefixes(ctx: Context) -> set[int]:
    """The ids of the strings that name ``/tmp`` only as a parent or a prefix, not a path to use.

    ``mkdtemp(dir="/tmp")`` makes a unique directory inside it, and
    ``path.startswith("/tmp")`` only compares.
    """
    found: set[int] = set()
    for call in ctx.of(ast.Call):
        func = call.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
        if name in _TEMPFILE_FUNCTIONS:
            found |= {id(keyword.value) for keyword in call.keywords if keyword.arg == "dir"}
        elif name in _PREFIX_METHODS and isinstance(func, ast.Attribute):
            for arg in call.args:
                found |= {id(arg)} | {id(item) for item in getattr(arg, "elts", ())}
    return found
