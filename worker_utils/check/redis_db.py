"""Rules WU6xx: hard-coded Redis database indexes.

A Redis server has 16 numbered databases shared by every client. A suite that
picks ``db=15`` for its tests passes alone and breaks under ``-n 4``: every
worker flushes and fills the same database, and so does a second run on the
same server.
"""

from __future__ import annotations

import ast
import re

from worker_utils.check._base import Context, rule

__all__ = ["MARKERS", "RULES", "WHOLE_FILE", "check"]

_HINT = "use the worker_redis_url or worker_redis_db fixture"
DB_ARGUMENT = rule(
    "WU601",
    "hard-coded Redis database {db} passed to {function}()",
    _HINT,
    name="hard-coded-redis-db",
    summary="A Redis database index given to a client: every worker shares the database.",
)
DB_IN_URL = rule(
    "WU602",
    "hard-coded Redis database {db} in {url!r}",
    _HINT,
    name="redis-db-in-url",
    summary="A Redis URL naming a database: every worker shares the database.",
)
SELECT = rule(
    "WU603",
    "SELECT {db} switches to a hard-coded Redis database",
    _HINT,
    name="redis-select",
    summary="A SELECT of a numbered Redis database: every worker shares the database.",
)
RULES = (DB_ARGUMENT, DB_IN_URL, SELECT)
# "edis" is Redis in any case; the rules only look further in a file that names it.
MARKERS = ("db=", "db =", "edis", "EDIS", "alkey", "select", "SELECT")
WHOLE_FILE = False

_MENTIONS = re.compile(r"redis|valkey", re.I)
_KEYWORDS = frozenset({"db", "redis_db"})
# Redis(host, port, db, ...): the client classes whose third positional argument is the index.
_CLIENTS = frozenset({"Redis", "StrictRedis"})
_COMMANDS = frozenset({"execute_command", "send_command"})
_CLIENT_SUFFIXES = ("client", "conn", "connection")
_SCHEMES = r"\b(?:rediss?|valkeys?|unix)://"
_URLS = (
    # redis://[user:password@]host[:port]/15: the path is the index.
    re.compile(_SCHEMES + r"[^/\s'\"?#]*/(?P<db>\d+)(?![\w.])"),
    # redis://host?db=15 and unix:///run/redis.sock?db=15
    re.compile(_SCHEMES + r"[^\s'\"?#]*\?(?:[^\s'\"#]*&)?db=(?P<db>\d+)(?!\w)"),
)


def check(ctx: Context) -> None:
    """Report database indexes given to Redis clients, in Redis URLs and to SELECT."""
    if not _MENTIONS.search(ctx.source):
        return
    constants = _Constants(ctx)
    clients = _client_names(ctx)
    for call in ctx.of(ast.Call):
        _check_call(ctx, call, constants, clients)
    # An f-string's parts are read as one text, with {} for each placeholder.
    skipped = ctx.docstrings | {id(part) for node in ctx.of(ast.JoinedStr) for part in node.values}
    for node in ctx.of(ast.Constant):
        if isinstance(node.value, str) and id(node) not in skipped:
            _check_text(ctx, node, node.value)
    for joined in ctx.of(ast.JoinedStr):
        text = "".join(
            str(part.value) if isinstance(part, ast.Constant) else "{}" for part in joined.values
        )
        _check_text(ctx, joined, text)


def _check_call(ctx: Context, node: ast.Call, constants: _Constants, clients: set[str]) -> None:
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "call")
    for keyword in node.keywords:
        if keyword.arg in _KEYWORDS:
            db = constants.index(keyword.value)
            if db is not None:
                ctx.report(DB_ARGUMENT, keyword.value, db=db, function=name)
    if name in _CLIENTS and len(node.args) >= 3:
        db = constants.index(node.args[2])
        if db is not None:
            ctx.report(DB_ARGUMENT, node.args[2], db=db, function=name)
    if not isinstance(func, ast.Attribute):
        return
    if func.attr in _COMMANDS and len(node.args) == 2:
        command = node.args[0]
        if isinstance(command, ast.Constant) and str(command.value).upper() == "SELECT":
            db = constants.index(node.args[1])
            if db is not None:
                ctx.report(SELECT, node, db=db)
    elif (
        func.attr == "select"
        and len(node.args) == 1
        and not node.keywords
        and _is_client(func.value, clients)
    ):
        db = constants.index(node.args[0])
        if db is not None:
            ctx.report(SELECT, node, db=db)


def _name(node: ast.AST) -> str | None:
    """The last identifier of ``node``: ``c`` for ``c``, ``self.c`` or ``make().c``."""
    if isinstance(node, ast.Call):
        node = node.func
    if isinstance(node, ast.Attribute):
        return node.attr
    return node.id if isinstance(node, ast.Name) else None


def _client_names(ctx: Context) -> set[str]:
    """Names bound to the result of a Redis constructor, as ``r = redis.Redis()``."""
    names: set[str] = set()
    for node in ctx.of(ast.Assign):
        if isinstance(node.value, ast.Call) and _MENTIONS.search(
            ctx.qualname(node.value.func) or ""
        ):
            names |= {name for target in node.targets if (name := _name(target))}
    return names


def _is_client(receiver: ast.expr, clients: set[str]) -> bool:
    """Whether the receiver of ``.select()`` looks like a Redis client, not a query or selector.

    Its name mentions Redis or Valkey, ends in ``client`` or ``conn``/``connection``,
    or was bound from a Redis constructor in the file.
    """
    name = _name(receiver)
    if name is None:
        return False
    if isinstance(receiver, ast.Call):
        return bool(_MENTIONS.search(name))
    return (
        name in clients or bool(_MENTIONS.search(name)) or name.lower().endswith(_CLIENT_SUFFIXES)
    )


def _check_text(ctx: Context, node: ast.AST, text: str) -> None:
    if "://" not in text:
        return
    for pattern in _URLS:
        for match in pattern.finditer(text):
            ctx.report(DB_IN_URL, node, db=int(match["db"]), url=match[0])


class _Constants:
    """Integer constants named at module or class level, as in ``REDIS_DB = 15``.

    A test base class that holds its database in an attribute passes it as
    ``db=self.REDIS_DB``: the attribute is resolved by name, whatever the class.
    """

    def __init__(self, ctx: Context) -> None:
        self.names: dict[str, int] = {}
        self.attributes: dict[str, int] = {}
        # Read from the tree: the shared index skips statements without a marker.
        self._collect(ctx.tree.body, self.names)
        top_level = [node for node in ctx.tree.body if isinstance(node, ast.ClassDef)]
        for node in (*top_level, *ctx.of(ast.ClassDef)):
            self._collect(node.body, self.attributes)

    @staticmethod
    def _collect(body: list[ast.stmt], into: dict[str, int]) -> None:
        for statement in body:
            value: ast.expr | None
            if isinstance(statement, ast.Assign) and len(statement.targets) == 1:
                target, value = statement.targets[0], statement.value
            elif isinstance(statement, ast.AnnAssign):
                target, value = statement.target, statement.value
            else:
                continue
            number = _literal(value)
            if isinstance(target, ast.Name) and number is not None:
                into[target.id] = number

    def index(self, node: ast.expr) -> int | None:
        """The database index ``node`` names: a literal, or a constant defined in the file."""
        if isinstance(node, ast.Name):
            return self.names.get(node.id)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            return self.attributes.get(node.attr)
        return _literal(node)


def _literal(node: ast.expr | None) -> int | None:
    """A database index written as ``15`` or ``"15"``."""
    if not isinstance(node, ast.Constant):
        return None
    if type(node.value) is int and node.value >= 0:
        return node.value
    if isinstance(node.value, str) and node.value.isdigit() and node.value.isascii():
        return int(node.value)
    return None
