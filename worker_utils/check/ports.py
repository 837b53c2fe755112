"""Rules WU2xx: hard-coded TCP ports.

Under ``-n 4`` four workers bind the same port and three of them fail; two
concurrent runs on one host collide the same way.
"""

from __future__ import annotations

import ast
import re

from worker_utils.check._base import Context, is_port, rule

__all__ = ["LINE_PATTERN", "MARKERS", "RULES", "WHOLE_FILE", "check"]

_HINT = "use the worker_port fixture or worker_utils.lease_port()"
# A server's well-known port: the fix is the fixture for that server, not a port.
_SERVER_HINTS = {
    5432: "use the worker_postgres_dsn or worker_postgres_url fixture",
    6379: "use the worker_redis_url or worker_redis fixture",
}
_SCHEME_PORTS = {"postgres": 5432, "postgresql": 5432, "redis": 6379, "rediss": 6379}


def _hint(port: object, address: str = "") -> str | None:
    scheme = address.partition("://")[0].lower() if "://" in address else ""
    known = _SCHEME_PORTS.get(scheme, port if isinstance(port, int) else 0)
    return _SERVER_HINTS.get(known)


PORT_ARGUMENT = rule(
    "WU201",
    "hard-coded port {port} passed to {function}()",
    _HINT,
    name="hard-coded-port",
    summary="A port passed to a call: every worker and concurrent run uses it.",
)
PORT_IN_URL = rule(
    "WU202",
    "hard-coded port {port} in {address!r}",
    _HINT,
    name="port-in-url",
    summary="A port in a URL or address: every worker and concurrent run uses it.",
)
PORT_IN_COMMAND = rule(
    "WU203",
    "hard-coded port {port} on the command line {command!r}",
    "lease one with worker_utils.lease_port() or the worker_port fixture and pass it",
    name="port-in-command",
    summary="A server started with a fixed port: every worker and concurrent run starts it there.",
)
RULES = (PORT_ARGUMENT, PORT_IN_URL, PORT_IN_COMMAND)

_FUNCTIONS = frozenset(
    {
        "bind",
        "connect",
        "connect_ex",
        "create_connection",
        "create_server",
        "open_connection",
        "start_server",
    }
)
_HOST = re.compile(r"|localhost|::1?|\d{1,3}(?:\.\d{1,3}){3}")
# scheme://[user[:password]@]host:port, or a bare localhost/IPv4/[IPv6] address with a port.
_ADDRESS = re.compile(
    r"(?:\b[a-z][a-z0-9+.-]*://(?:[^/@\s]*@)?(?:\[[0-9a-f:.]+\]|[^\s/:@?#\[\]]+)"
    r"|\blocalhost|\b\d{1,3}(?:\.\d{1,3}){3}|\[[0-9a-f:]+\])"
    r":(?P<port>\d{1,5})(?![\w.:])",
    re.I,
)
_TEXT_MARKERS = ("://", "localhost", "127.", "0.0.0.0", "[::")
# A bare IPv4 address with a port ("10.0.0.5:6379") has no fixed substring to search for.
LINE_PATTERN = re.compile(r"\d\.\d{1,3}:\d")
# A port option of a server's command line: --port N, --port=N, -p N.
_PORT_OPTIONS = frozenset({"--port", "-p"})
_PORT_IN_COMMAND = re.compile(r"(?:^|\s)(?:--port[=\s]+|-p\s+)(?P<port>\d{1,5})(?!\S)")
# Below 1024 "-p N" is more likely a count than a port (ports there need root).
_LOWEST_SHORT = 1024
# Where a port may hide: socket calls, port= keywords, URLs, ("host", port) tuples, commands.
MARKERS = (
    *_FUNCTIONS,
    "port=",
    "port =",
    *_TEXT_MARKERS,
    '("", ',
    "('', ",
    '("::',
    "('::",
    "--port",
    "-p",
)
WHOLE_FILE = False


def check(ctx: Context) -> None:
    """Report port literals passed to socket calls, ``port=`` keywords and ports in URLs."""
    scan_text = any(marker in ctx.source for marker in _TEXT_MARKERS) or bool(
        LINE_PATTERN.search(ctx.source)
    )
    for call in ctx.of(ast.Call):
        _check_call(ctx, call)
    for argv in ctx.of(ast.List):
        _check_command(ctx, argv)
    for argv_tuple in ctx.of(ast.Tuple):
        _check_command(ctx, argv_tuple)
    if "--port" in ctx.source or "-p " in ctx.source:
        for node in ctx.of(ast.Constant):
            _check_command_text(ctx, node)
    if not scan_text:
        return
    docstrings = ctx.docstrings
    for node in ctx.of(ast.Constant):
        if isinstance(node.value, str) and id(node) not in docstrings:
            for match in _ADDRESS.finditer(node.value):
                port = int(match["port"])
                if 1 <= port <= 65535:
                    hint = _hint(port, match[0])
                    ctx.report(PORT_IN_URL, node, hint=hint, port=port, address=match[0])


def _check_call(ctx: Context, node: ast.Call) -> None:
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "call")
    socket_call = name in _FUNCTIONS

    def report(port: ast.expr) -> None:
        value = _value(port)
        ctx.report(PORT_ARGUMENT, port, hint=_hint(value), port=value, function=name)

    for arg in node.args:
        if socket_call and is_port(arg):
            report(arg)
        elif isinstance(arg, ast.Tuple) and len(arg.elts) >= 2 and is_port(arg.elts[1]):
            host = arg.elts[0]
            # Any call may take a (host, port) address, e.g. HTTPServer(("", 8000), ...).
            if socket_call or (
                isinstance(host, ast.Constant)
                and isinstance(host.value, str)
                and _HOST.fullmatch(host.value)
            ):
                report(arg.elts[1])
    for keyword in node.keywords:
        if keyword.arg == "port" and is_port(keyword.value):
            report(keyword.value)


def _value(node: ast.expr) -> object:
    return node.value if isinstance(node, ast.Constant) else None


def _port_text(node: ast.expr) -> int | None:
    """The port a command-line argument names: an integer or a string of digits, not 0."""
    value = node.value if isinstance(node, ast.Constant) else None
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    return value if type(value) is int and 1 <= value <= 65535 else None


def _check_command(ctx: Context, node: ast.List | ast.Tuple) -> None:
    """``["redis-server", "--port", "6360"]``: the argv of a server on a fixed port."""
    items = node.elts
    texts = [item.value if isinstance(item, ast.Constant) else None for item in items]
    if not any(isinstance(text, str) and text.startswith("-") for text in texts):
        return
    command = " ".join(str(text) if text is not None else "..." for text in texts)
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            continue
        port: int | None = None
        where: ast.expr = items[index]
        if text in _PORT_OPTIONS and index + 1 < len(items):
            port, where = _port_text(items[index + 1]), items[index + 1]
            if text == "-p" and (port or 0) < _LOWEST_SHORT:
                port = None
        # "--port=8000" or "--port 8000" as one argument: _check_command_text reports it.
        if port is not None:
            ctx.report(PORT_IN_COMMAND, where, hint=_hint(port), port=port, command=command)


def _check_command_text(ctx: Context, node: ast.Constant) -> None:
    """``"redis-server --port 6360"``: a shell command line, or one argument of an argv."""
    text = node.value
    if not isinstance(text, str) or "-p" not in text:
        return
    for match in _PORT_IN_COMMAND.finditer(text):
        port = int(match["port"])
        lowest = 1 if "--port" in match[0] else _LOWEST_SHORT
        if lowest <= port <= 65535:
            ctx.report(PORT_IN_COMMAND, node, hint=_hint(port), port=port, command=text)
