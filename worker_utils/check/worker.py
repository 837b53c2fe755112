"""Rules WU3xx: hand-rolled worker arithmetic.

Parsing ``gw3`` by hand breaks outside xdist (``master``), and numbering ports
or databases from the worker number collides when a crashed worker restarts
with a higher id or when two runs on one host both have a ``gw0``.
"""

from __future__ import annotations

import ast

from worker_utils.check._base import Context, rule

__all__ = ["MARKERS", "RULES", "WHOLE_FILE", "check"]

ENV_READ = rule(
    "WU301",
    "{name} read from the environment by hand",
    "use worker_utils.get_worker_id(), get_worker_num() or get_worker_count()",
    name="worker-env-read",
    summary="An xdist variable read from the environment by hand, without the master case.",
)
ID_PARSED = rule(
    "WU302",
    "worker id parsed by hand",
    "use worker_utils.get_worker_num()",
    name="worker-id-parsed",
    summary="A worker id taken apart by hand.",
)
NUMBER_ARITHMETIC = rule(
    "WU303",
    "resource number computed from the worker number",
    "use the worker_port fixture or worker_utils.lease_port()",
    name="worker-number-arithmetic",
    summary="A resource number computed from the worker number: restarts collide.",
)
RULES = (ENV_READ, ID_PARSED, NUMBER_ARITHMETIC)
MARKERS = ("worker_id", "workerid", "XDIST", "worker_num", "worker_i", "worker_no")
# A worker id flows through variables with any name: once one is in sight, walk it all.
WHOLE_FILE = True

_XDIST_VARS = frozenset(
    {"PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "PYTEST_XDIST_TESTRUNUID"}
)
_ENV_GETTERS = frozenset({"os.environ.get", "os.getenv"})
_STRING_PARSERS = frozenset(
    {"replace", "lstrip", "strip", "rstrip", "removeprefix", "split", "rsplit", "partition"}
)
_REGEX_FUNCTIONS = frozenset({"re.sub", "re.match", "re.search", "re.fullmatch", "re.findall"})
_NUMBER_NAMES = frozenset(
    {"worker_num", "worker_number", "worker_index", "worker_idx", "worker_no"}
)
_NUMBER_FUNCTIONS = frozenset({"get_worker_num"})
_PORTISH = ("port", "base", "offset")


def check(ctx: Context) -> None:
    """Report reads of the xdist variables, worker id parsing and worker-number arithmetic."""
    if not any(marker in ctx.source for marker in MARKERS):
        return
    candidates = [*ctx.of(ast.Subscript), *ctx.of(ast.Call), *ctx.of(ast.Compare)]
    for node in candidates:
        name = _env_read(ctx, node)
        if name is not None:
            ctx.report(ENV_READ, node, name=name)
    scopes = _scopes(ctx.tree)
    tainted = _tainted_names(ctx, scopes)
    for node in candidates:
        ids, _ = tainted.get(id(scopes[id(node)]), tainted[id(ctx.tree)])
        if _is_parse(ctx, node, ids):
            ctx.report(ID_PARSED, node)
    for binary in ctx.of(ast.BinOp):
        ids, numbers = tainted.get(id(scopes[id(binary)]), tainted[id(ctx.tree)])
        if _is_arithmetic(ctx, binary, ids, numbers):
            ctx.report(NUMBER_ARITHMETIC, binary)


def _env_read(ctx: Context, node: ast.AST) -> str | None:
    """The xdist variable ``node`` reads from the environment, if it reads one."""
    key: ast.AST | None = None
    if isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load):
        if ctx.is_environ(node.value):
            key = node.slice
    elif isinstance(node, ast.Call) and node.args:
        if ctx.qualname(node.func) in _ENV_GETTERS:
            key = node.args[0]
    elif (
        isinstance(node, ast.Compare)
        and isinstance(node.ops[0], ast.In | ast.NotIn)
        and ctx.is_environ(node.comparators[0])
    ):
        key = node.left
    if isinstance(key, ast.Constant) and key.value in _XDIST_VARS:
        return str(key.value)
    return None


def _is_worker_id(ctx: Context, node: ast.AST, ids: set[str]) -> bool:
    if isinstance(node, ast.Name):
        return node.id == "worker_id" or node.id in ids
    if isinstance(node, ast.Subscript):
        # config.workerinput["workerid"]
        container = node.value
        container_name = getattr(container, "attr", getattr(container, "id", None))
        key = node.slice
        if container_name == "workerinput" and isinstance(key, ast.Constant):
            return key.value == "workerid"
    if isinstance(node, ast.BoolOp):
        # os.environ.get("PYTEST_XDIST_WORKER") or "gw0"
        return isinstance(node.op, ast.Or) and any(
            _is_worker_id(ctx, value, ids) for value in node.values
        )
    if isinstance(node, ast.Compare):
        return False
    return _env_read(ctx, node) == "PYTEST_XDIST_WORKER"


def _is_parse(ctx: Context, node: ast.AST, ids: set[str]) -> bool:
    """Whether ``node`` takes a worker id apart: slices, strips, splits or regex-matches it."""
    if isinstance(node, ast.Subscript):
        return isinstance(node.ctx, ast.Load) and _is_worker_id(ctx, node.value, ids)
    if not isinstance(node, ast.Call):
        return False
    func = node.func
    if isinstance(func, ast.Attribute) and func.attr in _STRING_PARSERS:
        return _is_worker_id(ctx, func.value, ids)
    if ctx.qualname(func) in _REGEX_FUNCTIONS:
        return any(_is_worker_id(ctx, arg, ids) for arg in node.args)
    return False


def _is_number(ctx: Context, node: ast.AST, ids: set[str], numbers: set[str]) -> bool:
    """Whether ``node`` is a worker number: a helper's result, a parsed id or a name for one."""
    if isinstance(node, ast.Name):
        return node.id in _NUMBER_NAMES or node.id in numbers
    if isinstance(node, ast.Call):
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
        if name in _NUMBER_FUNCTIONS:
            return True
        if name == "int" and node.args:
            return _is_parse(ctx, node.args[0], ids) or _is_number(ctx, node.args[0], ids, numbers)
    return _is_parse(ctx, node, ids)


def _is_arithmetic(ctx: Context, node: ast.BinOp, ids: set[str], numbers: set[str]) -> bool:
    """Whether ``node`` scales, offsets or wraps a worker number into a resource number."""
    for number, other in ((node.left, node.right), (node.right, node.left)):
        if not _is_number(ctx, number, ids, numbers):
            continue
        if isinstance(node.op, ast.Mult | ast.Mod):
            return True
        if isinstance(node.op, ast.Add):
            if isinstance(other, ast.Constant) and isinstance(other.value, int):
                return other.value >= 1024
            other_name = ctx.qualname(other) or ""
            return any(word in other_name.lower() for word in _PORTISH)
    return False


_Function = ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda


def _scopes(tree: ast.Module) -> dict[int, ast.AST]:
    """Map the id of every node to the function (or the module) whose local names it sees."""
    scopes: dict[int, ast.AST] = {}
    stack: list[tuple[ast.AST, ast.AST]] = [(tree, tree)]
    while stack:
        node, scope = stack.pop()
        scopes[id(node)] = scope
        inner = node if isinstance(node, _Function) else scope
        stack += [(child, inner) for child in ast.iter_child_nodes(node)]
    return scopes


def _tainted_names(
    ctx: Context, scopes: dict[int, ast.AST]
) -> dict[int, tuple[set[str], set[str]]]:
    """Per scope (by id): the names holding a worker id, and those holding a worker number.

    A function sees the module's names unless it binds its own: the ``n`` of
    one test is not the ``n`` of another.
    """
    assignments: dict[int, list[tuple[str, ast.expr]]] = {id(ctx.tree): []}
    for node in ctx.of(ast.Assign):
        if len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            key = id(scopes[id(node)])
            assignments.setdefault(key, []).append((node.targets[0].id, node.value))
    module = _taint(ctx, assignments[id(ctx.tree)], set(), set())
    tainted = {id(ctx.tree): module}
    functions: list[_Function] = [*ctx.of(ast.FunctionDef), *ctx.of(ast.AsyncFunctionDef)]
    functions += ctx.of(ast.Lambda)
    for function in functions:
        local = assignments.get(id(function), [])
        arguments = function.args
        bound = {name for name, _ in local} | {
            arg.arg for arg in (*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs)
        }
        ids, numbers = module
        tainted[id(function)] = _taint(ctx, local, ids - bound, numbers - bound)
    return tainted


def _taint(
    ctx: Context, assignments: list[tuple[str, ast.expr]], ids: set[str], numbers: set[str]
) -> tuple[set[str], set[str]]:
    """Add to ``ids`` and ``numbers`` the names ``assignments`` give a worker id or number."""
    ids, numbers = set(ids), set(numbers)
    changed = True
    # A few rounds settle chains like `wid = worker_id; num = int(wid[2:])`.
    while changed:
        changed = False
        for name, value in assignments:
            if name not in ids and _is_worker_id(ctx, value, ids):
                ids.add(name)
                changed = True
            elif name not in numbers and _is_number(ctx, value, ids, numbers):
                numbers.add(name)
                changed = True
    return ids, numbers
