"""Options of the runtime guard: off by default, its hooks registered only when asked for."""

from __future__ import annotations

import pytest

from worker_utils._plugin import find_setting, usage_error

_GUARD_PLUGIN = "worker_utils.guard"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("worker_utils")
    group.addoption(
        "--worker-utils-guard",
        dest="worker_utils_guard",
        nargs="?",
        const="warn",
        default=None,
        metavar="MODE",
        help="Report tests that leak os.environ, cwd or sys.path, and misplaced autouse "
        "fixtures: warn (the default when given) or strict",
    )
    parser.addini(
        "worker_utils_guard",
        "Runtime guard mode: off (the default), warn or strict",
        default="off",
    )
    parser.addini(
        "worker_utils_guard_ignore_env",
        "Environment variables the guard never reports, as fnmatch patterns such as MYAPP_*",
        type="args",
        default=[],
    )


def pytest_configure(config: pytest.Config) -> None:
    __tracebackhide__ = True
    from worker_utils import guard

    setting, text = find_setting(config, "guard")
    try:
        mode = guard.parse_mode(text, setting=setting)
    except ValueError as exc:
        usage_error(exc)
    if mode != "off":
        workerinput = getattr(config, "workerinput", None)
        first_worker = workerinput is None or workerinput.get("workerid") == "gw0"
        config.pluginmanager.register(
            guard.Guard(
                mode, config.getini("worker_utils_guard_ignore_env"), first_worker=first_worker
            ),
            _GUARD_PLUGIN,
        )
