"""Rules WU5xx: autouse fixtures that set up shared state in the wrong place.

A broad-scoped autouse fixture in a test module runs once per worker that
happens to collect the module, and the same autouse name defined in several
places silently overrides (or doubles) setup depending on the directory.
"""

from __future__ import annotations

import ast

from worker_utils.check._base import Autouse, Context, rule

__all__ = ["MARKERS", "RULES", "WHOLE_FILE", "check"]

IN_TEST_MODULE = rule(
    "WU501",
    "{scope}-scoped autouse fixture {name!r} in a test module",
    "move it to conftest.py or make it function-scoped",
    name="broad-autouse-in-test-module",
    summary="A broad autouse fixture in a test module runs once per worker collecting it.",
)
DUPLICATE = rule(
    "WU502",
    "autouse fixture {name!r} already defined at {first}",
    "keep one definition in the conftest.py shared by both",
    name="duplicate-autouse-fixture",
    summary="An autouse fixture defined twice: one overrides or doubles the other.",
)
# A class's fixture overrides the outer one for the class's tests only.
METHOD_HINT = "rename the method, or keep one definition"
RULES = (IN_TEST_MODULE, DUPLICATE)
MARKERS = ("autouse",)
WHOLE_FILE = False

_FIXTURE_DECORATORS = frozenset({"pytest.fixture", "pytest_asyncio.fixture"})
_BROAD_SCOPES = frozenset({"module", "package", "session"})


def check(ctx: Context) -> None:
    """Report broad autouse fixtures outside conftest.py and collect every autouse definition.

    Duplicates span files, so :func:`worker_utils.check.check_paths` reports them
    from ``ctx.autouse``.
    """
    if MARKERS[0] not in ctx.source:
        return
    functions: list[ast.FunctionDef | ast.AsyncFunctionDef] = [*ctx.of(ast.FunctionDef)]
    functions += ctx.of(ast.AsyncFunctionDef)
    classes = _enclosing_classes(ctx.tree)
    for node in functions:
        for decorator in node.decorator_list:
            options = _autouse_options(ctx, decorator)
            if options is None:
                continue
            name = options.get("name", node.name)
            # A fixture defined inside a function is never collected: it doubles nothing.
            if id(node) in classes:
                ctx.autouse.append(Autouse(name, node.lineno, ctx.column(node), classes[id(node)]))
            scope = options.get("scope", "function")
            if scope in _BROAD_SCOPES and not ctx.is_conftest:
                ctx.report(IN_TEST_MODULE, node, scope=scope, name=name)


def _enclosing_classes(tree: ast.Module) -> dict[int, tuple[str, ...]]:
    """Map the id of each function at module or class level to the names of its classes."""
    found: dict[int, tuple[str, ...]] = {}
    stack: list[tuple[list[ast.stmt], tuple[str, ...]]] = [(tree.body, ())]
    while stack:
        body, classes = stack.pop()
        for statement in body:
            if isinstance(statement, ast.ClassDef):
                stack.append((statement.body, (*classes, statement.name)))
            elif isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef):
                found[id(statement)] = classes
    return found


def _autouse_options(ctx: Context, decorator: ast.expr) -> dict[str, str] | None:
    """The string options of an ``autouse=True`` fixture decorator, or None for anything else."""
    if not isinstance(decorator, ast.Call):
        return None
    if ctx.qualname(decorator.func) not in _FIXTURE_DECORATORS:
        return None
    options: dict[str, str] = {}
    autouse = False
    for keyword in decorator.keywords:
        value = keyword.value
        if keyword.arg == "autouse":
            autouse = isinstance(value, ast.Constant) and value.value is True
        elif keyword.arg and isinstance(value, ast.Constant) and isinstance(value.value, str):
            options[keyword.arg] = value.value
    return options if autouse else None
