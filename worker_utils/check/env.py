"""Rules WU1xx: environment writes outside ``monkeypatch``.

A test that changes ``os.environ`` by hand leaks the change into every later
test on the same worker, so the suite passes or fails with the order xdist
happens to pick.
"""

from __future__ import annotations

import ast

from worker_utils.check._base import Context, rule

__all__ = ["MARKERS", "RULES", "WHOLE_FILE", "check"]

_HINT = "use monkeypatch.setenv() or monkeypatch.delenv()"
ITEM_SET = rule(
    "WU101",
    "os.environ item set outside monkeypatch",
    "use monkeypatch.setenv()",
    name="environ-item-set",
    summary="An os.environ item set by hand leaks into every later test on the worker.",
)
ITEM_DELETED = rule(
    "WU102",
    "os.environ item deleted outside monkeypatch",
    "use monkeypatch.delenv()",
    name="environ-item-deleted",
    summary="An os.environ item deleted by hand stays deleted for every later test on the worker.",
)
METHOD = rule(
    "WU103",
    "os.environ.{method}() changes the environment outside monkeypatch",
    _HINT,
    name="environ-method-call",
    summary="An os.environ method call changes the environment for later tests.",
)
PUTENV = rule(
    "WU104",
    "{function}() changes the environment outside monkeypatch",
    _HINT,
    name="putenv-call",
    summary="os.putenv() or os.unsetenv() changes the process environment and is never undone.",
)
PATCH_DICT = rule(
    "WU105",
    "patch.dict() of os.environ instead of monkeypatch",
    _HINT,
    name="environ-patch-dict",
    summary="patch.dict() of os.environ restores it by clearing and refilling it.",
)
RULES = (ITEM_SET, ITEM_DELETED, METHOD, PUTENV, PATCH_DICT)
MARKERS = ("environ", "putenv", "unsetenv")
WHOLE_FILE = False

_METHODS = frozenset(
    {"pop", "popitem", "update", "setdefault", "clear", "__setitem__", "__delitem__"}
)
_PUTENV = frozenset({"os.putenv", "os.unsetenv"})
_PATCH_DICT = frozenset({"unittest.mock.patch.dict", "mock.patch.dict", "patch.dict"})


def check(ctx: Context) -> None:
    """Report environment writes that bypass ``monkeypatch``."""
    if not any(marker in ctx.source for marker in MARKERS):
        return
    assigned = [target for node in ctx.of(ast.Assign) for target in node.targets]
    assigned += [node.target for node in ctx.of(ast.AnnAssign)]
    assigned += [node.target for node in ctx.of(ast.For)]
    assigned += [node.target for node in ctx.of(ast.AsyncFor)]
    assigned += [item.optional_vars for item in ctx.of(ast.withitem) if item.optional_vars]
    for augmented in ctx.of(ast.AugAssign):
        assigned.append(augmented.target)
        # os.environ |= {...} sets items too.
        if isinstance(augmented.op, ast.BitOr) and ctx.is_environ(augmented.target):
            ctx.report(ITEM_SET, augmented.target)
    while assigned:
        target = assigned.pop()
        if isinstance(target, ast.Tuple | ast.List):
            assigned += target.elts
        elif isinstance(target, ast.Starred):
            assigned.append(target.value)
        elif isinstance(target, ast.Subscript) and ctx.is_environ(target.value):
            ctx.report(ITEM_SET, target)
    for node in ctx.of(ast.Delete):
        for target in node.targets:
            if isinstance(target, ast.Subscript) and ctx.is_environ(target.value):
                ctx.report(ITEM_DELETED, target)
    for call in ctx.of(ast.Call):
        _check_call(ctx, call)


def _check_call(ctx: Context, node: ast.Call) -> None:
    func = node.func
    if isinstance(func, ast.Attribute) and func.attr in _METHODS and ctx.is_environ(func.value):
        ctx.report(METHOD, node, method=func.attr)
        return
    name = ctx.qualname(func)
    if name in _PUTENV:
        ctx.report(PUTENV, node, function=name)
    elif name in _PATCH_DICT:
        target = node.args[0] if node.args else None
        for keyword in node.keywords:
            if keyword.arg == "in_dict":
                target = keyword.value
        if target is not None and (
            ctx.is_environ(target)
            or (isinstance(target, ast.Constant) and target.value == "os.environ")
        ):
            ctx.report(PATCH_DICT, node)
