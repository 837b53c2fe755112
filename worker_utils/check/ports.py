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
RULES = (PORT_ARGUMENT, PORT_IN_URL)

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
# Where a port may hide: socket calls, port= keywords, URLs, ("host", port) tuples.
MARKERS = (*_FUNCTIONS, "port=", "port =", *_TEXT_MARKERS, '("", ', "('', ", '("::', "('::")
WHOLE_FILE = False


def check(ctx: Context) -> None:
    """Report port literals passed to socket calls, ``port=`` keywords and ports in URLs."""
    scan_text = any(marker in ctx.source for marker in _TEXT_MARKERS) or bool(
        LINE_PATTERN.search(ctx.source)
    )
    for call in ctx.of(ast.Call):
        _check_call(ctx, call)
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
