"""Rules WU2xx: hard-coded TCP ports.

Under ``-n 4`` four workers bind the same port and three of them fail; two
concurrent runs on one host collide the same way.
"""

from __future__ import annotations

import ast
import re

from worker_utils.check._base import Context, is_port, rule

__all__ = ["MARKERS", "RULES", "WHOLE_FILE", "check"]

_HINT = "use the worker_port fixture or worker_utils.lease_port()"
PORT_ARGUMENT = rule("WU201", "hard-coded port {port} passed to {function}()", _HINT)
PORT_IN_URL = rule("WU202", "hard-coded port {port} in {address!r}", _HINT)
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
    r":(?P<port>\d{1,5})(?![\d.:])",
    re.I,
)
_TEXT_MARKERS = ("://", "localhost", "127.", "0.0.0.0", "[::")
# Where a port may hide: socket calls, port= keywords, URLs, ("host", port) tuples.
MARKERS = (*_FUNCTIONS, "port=", "port =", *_TEXT_MARKERS, '("", ', "('', ", '("::', "('::")
WHOLE_FILE = False


def check(ctx: Context) -> None:
    """Report port literals passed to socket calls, ``port=`` keywords and ports in URLs."""
    scan_text = any(marker in ctx.source for marker in _TEXT_MARKERS)
    for call in ctx.of(ast.Call):
        _check_call(ctx, call)
    if not scan_text:
        return
    docstrings = ctx.docstrings
    for node in ctx.of(ast.Constant):
        if isinstance(node.value, str) and id(node) not in docstrings:
            for match in _ADDRESS.finditer(node.value):
                if 1 <= int(match["port"]) <= 65535:
                    ctx.report(PORT_IN_URL, node, port=int(match["port"]), address=match[0])


def _check_call(ctx: Context, node: ast.Call) -> None:
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "call")
    socket_call = name in _FUNCTIONS
    for arg in node.args:
        if socket_call and is_port(arg):
            ctx.report(PORT_ARGUMENT, arg, port=_value(arg), function=name)
        elif isinstance(arg, ast.Tuple) and len(arg.elts) >= 2 and is_port(arg.elts[1]):
            host = arg.elts[0]
            # Any call may take a (host, port) address, e.g. HTTPServer(("", 8000), ...).
            if socket_call or (
                isinstance(host, ast.Constant)
                and isinstance(host.value, str)
                and _HOST.fullmatch(host.value)
            ):
                ctx.report(PORT_ARGUMENT, arg.elts[1], port=_value(arg.elts[1]), function=name)
    for keyword in node.keywords:
        if keyword.arg == "port" and is_port(keyword.value):
            ctx.report(PORT_ARGUMENT, keyword.value, port=_value(keyword.value), function=name)


def _value(node: ast.expr) -> object:
    return node.value if isinstance(node, ast.Constant) else None
