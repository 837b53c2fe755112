"""Settings of the runtime guard: off by default, its hooks registered only when asked for."""

from __future__ import annotations

from typing import Any

import pytest

from worker_utils import _settings

_GUARD_PLUGIN = "worker_utils.guard"


def _mode(text: str) -> str:
    from worker_utils import guard

    return guard.parse_mode(text)


MODE = _settings.Setting(
    name="guard",
    help="Report tests that leak os.environ, cwd or sys.path, and misplaced autouse fixtures "
    "(the option alone means warn)",
    accepted="off, warn or strict",
    parse=_mode,
    default="off",
    metavar="MODE",
    const="warn",
)
IGNORE_ENV = _settings.Setting[list[str]](
    name="guard_ignore_env",
    help="Environment variables the guard never reports nor restores",
    accepted="fnmatch patterns separated by spaces or commas, such as MYAPP_* COVERAGE_*",
    parse=_settings.words,
    default=[],
    default_text="none",
    metavar="PATTERNS",
    multiple=True,
)
SETTINGS: list[_settings.Setting[Any]] = [MODE, IGNORE_ENV]


def pytest_addoption(parser: pytest.Parser) -> None:
    _settings.add_settings(parser, SETTINGS)


def pytest_configure(config: pytest.Config) -> None:
    __tracebackhide__ = True
    mode = _settings.resolve(config, MODE).value
    if mode != "off":
        from worker_utils import guard

        workerinput = getattr(config, "workerinput", None)
        first_worker = workerinput is None or workerinput.get("workerid") == "gw0"
        config.pluginmanager.register(
            guard.Guard(
                mode, _settings.resolve(config, IGNORE_ENV).value, first_worker=first_worker
            ),
            _GUARD_PLUGIN,
        )
