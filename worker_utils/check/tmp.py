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
WHOLE_FILE = False


def check(ctx: Context) -> None:
    """Report string literals naming a fixed path under ``/tmp``, ``/var/tmp`` or ``/dev/shm``."""
    if not any(marker in ctx.source for marker in MARKERS):
        return
    docstrings = ctx.docstrings
    for node in ctx.of(ast.Constant):
        if isinstance(node.value, str) and id(node) not in docstrings:
            match = _TMP.search(node.value)
            if match:
                ctx.report(FIXED_PATH, node, path=match[0])
