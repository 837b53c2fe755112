"""One table of settings: each with its option, environment variable, ini key, default and parser.

Each resource plugin lists its settings as :class:`Setting` objects, registers
them in ``pytest_addoption`` with :func:`add_settings` and reads them with
:func:`resolve`, always in one order: the command line
(``--worker-utils-<name>``), then the environment (``WORKER_UTILS_<NAME>``),
then the ini file (``worker_utils_<name>``), then the default. An empty value
counts as not given. ``docs/settings.md`` is generated from the same objects.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

import pytest

from worker_utils._util import mask_password

__all__ = [
    "Found",
    "Setting",
    "add_settings",
    "choice",
    "count",
    "one_of",
    "resolve",
    "seconds",
    "words",
]

T = TypeVar("T")

GROUP = "worker_utils"
#: The order :func:`resolve` looks in, as the docs and ``pytest --help`` state it.
ORDER = "command line > environment variable > ini file > default"


@dataclass(frozen=True)
class Setting(Generic[T]):
    """One setting, given as ``--worker-utils-<name>``, ``WORKER_UTILS_<NAME>`` or ini key.

    ``parse`` turns the text into the value, or raises :class:`ValueError`
    (with, if useful, a short reason); the error then names the setting, where
    the text came from, the text and ``accepted``.
    """

    name: str
    help: str
    accepted: str
    parse: Callable[[str], T]
    default: T
    #: How the docs show the default, when ``str(default)`` does not say it.
    default_text: str = ""
    metavar: str = "VALUE"
    #: A list: separated by spaces or commas, and a list in a TOML ini file.
    multiple: bool = False
    #: The value may hold a password, masked in messages.
    secret: bool = False
    #: The value of the option given alone (``--worker-utils-guard`` means warn).
    const: str | None = None

    @property
    def option(self) -> str:
        """The command-line option, such as ``--worker-utils-postgres-mode``."""
        return "--worker-utils-" + self.name.replace("_", "-")

    @property
    def env(self) -> str:
        """The environment variable, such as ``WORKER_UTILS_POSTGRES_MODE``."""
        return "WORKER_UTILS_" + self.name.upper()

    @property
    def ini(self) -> str:
        """The ini key, such as ``worker_utils_postgres_mode``: the setting's name in errors."""
        return "worker_utils_" + self.name

    @property
    def shown_default(self) -> str:
        """The default as the docs and ``pytest --help`` show it."""
        return self.default_text or str(self.default)


@dataclass(frozen=True)
class Found(Generic[T]):
    """A setting's value and where it was given."""

    value: T
    #: What the user set: the option, the environment variable or the ini key;
    #: empty for the default.
    where: str


def one_of(choices: Sequence[str]) -> str:
    """Return ``"a, b or c"``, for the accepted values of a choice."""
    return ", ".join(choices[:-1]) + f" or {choices[-1]}" if len(choices) > 1 else choices[0]


def choice(choices: Sequence[str]) -> Callable[[str], str]:
    """Return a parser accepting one of ``choices``, in any case."""

    def parse(text: str) -> str:
        if text.lower() not in choices:
            raise ValueError
        return text.lower()

    return parse


def words(text: str) -> list[str]:
    """Split a list given as text: items separated by spaces or commas."""
    return [word for word in re.split(r"[\s,]+", text) if word]


def seconds(text: str) -> float:
    """Parse a number of seconds, 0 or more."""
    try:
        value = float(text)
    except ValueError:
        raise ValueError from None  # the setting's message says what is accepted
    if not 0 <= value < float("inf"):
        raise ValueError
    return value


def count(text: str) -> int:
    """Parse a whole number, 0 or more."""
    if not text.isdigit():
        raise ValueError
    return int(text)


def add_settings(parser: pytest.Parser, settings: Sequence[Setting[Any]]) -> None:
    """Register ``settings`` as options of the ``worker_utils`` group and as ini keys."""
    group = parser.getgroup(GROUP)
    for setting in settings:
        alone: dict[str, Any] = {}
        if setting.const is not None:
            alone = {"nargs": "?", "const": setting.const}
        group.addoption(
            setting.option,
            dest=setting.ini,
            default=None,
            metavar=setting.metavar,
            help=f"{setting.help}: {setting.accepted} (default: {setting.shown_default}; "
            f"also ${setting.env} or ini {setting.ini})",
            **alone,
        )
        kind: Literal["args", "string"] = "args" if setting.multiple else "string"
        parser.addini(
            setting.ini,
            f"{setting.help}: {setting.accepted} (default: {setting.shown_default})",
            type=kind,
            default=[] if setting.multiple else "",
        )


def _given(config: pytest.Config, setting: Setting[Any]) -> Iterator[tuple[str, str, Any]]:
    """Yield, in the order of precedence, each place as (what was set, its origin, value)."""
    given = config.getoption(setting.ini, None)
    if given is None:  # before pytest fills config.option in: its early hooks
        given = getattr(getattr(config, "known_args_namespace", None), setting.ini, None)
    yield setting.option, setting.option, given
    yield setting.env, setting.env, os.environ.get(setting.env)
    yield setting.ini, _ini_origin(config, setting.ini), config.getini(setting.ini)


def _ini_origin(config: pytest.Config, key: str) -> str:
    overrides = config.getoption("override_ini", None)
    if overrides is None:  # before pytest fills config.option in: its early hooks
        overrides = getattr(getattr(config, "known_args_namespace", None), "override_ini", None)
    if any(item.partition("=")[0].strip() == key for item in overrides or ()):
        return "-o"
    return config.inipath.name if config.inipath is not None else "the ini file"


def resolve(config: pytest.Config, setting: Setting[T]) -> Found[T]:
    """Return the value of ``setting`` from the first place that gives it, else its default.

    Raises:
        pytest.UsageError: The value does not parse; the one-line message names
            the setting, where the value came from, the value and what is accepted.
    """
    __tracebackhide__ = True
    for where, origin, given in _given(config, setting):
        text = (" ".join(given) if isinstance(given, list) else str(given or "")).strip()
        if not text:
            continue
        try:
            return Found(setting.parse(text), where)
        except ValueError as exc:
            shown = mask_password(text) if setting.secret else text
            reason = f" ({exc})" if str(exc) else ""
            error = (
                f"{setting.ini} (from {origin}): found {shown!r}{reason}; "
                f"expected {setting.accepted}"
            )
        raise pytest.UsageError(error)
    return Found(setting.default, "")
