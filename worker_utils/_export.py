"""Environment export: a worker's own URL in a variable, set before conftest.py files are imported.

Each resource plugin has a ``worker_utils_<resource>_env`` setting: one or
more ``NAME[:FORM]`` words. The entry plugin calls the
:func:`pytest_worker_utils_export` hook while pytest loads its first conftest
files (before any of them is imported), in every xdist worker and in a run
without workers; each resource sets its variables with :meth:`Run.set_env
<worker_utils._plugin.Run.set_env>`, which restores the previous values when
the run ends. Settings read at import time (Django, pydantic-settings, a
module-level engine) and subprocesses the tests start see the worker's own
resource.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pytest

from worker_utils._settings import Setting

if TYPE_CHECKING:
    from worker_utils._plugin import Run

__all__ = [
    "Export",
    "accepted",
    "env_setting",
    "exports_parser",
    "failed",
    "failures",
    "pytest_worker_utils_export",
]

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class Export:
    """One variable to set, and the form of the value it gets."""

    name: str
    form: str


def accepted(example: str, forms: Sequence[str]) -> str:
    """The ``accepted`` text of an export setting, for its errors and ``pytest --help``."""
    return (
        f"variable names, each optionally followed by :FORM with FORM one of "
        f"{', '.join(forms)} (default {forms[0]}), such as {example}"
    )


def exports_parser(forms: Sequence[str]) -> Callable[[str], list[Export]]:
    """Return the parser of an export setting whose values come in ``forms`` (the first is the
    default)."""

    def parse(text: str) -> list[Export]:
        found: list[Export] = []
        for word in re.split(r"[\s,]+", text):
            if not word:
                continue
            name, _, form = word.partition(":")
            if not _NAME.fullmatch(name):
                raise ValueError(f"{name!r} is not a variable name")
            if form and form.lower() not in forms:
                raise ValueError(f"{word!r}: no form {form!r}")
            if any(export.name == name for export in found):
                raise ValueError(f"{name} is given twice")
            found.append(Export(name, form.lower() or forms[0]))
        return found

    return parse


def env_setting(
    resource: str, what: str, forms: Sequence[str], example: str
) -> Setting[list[Export]]:
    """The ``worker_utils_<resource>_env`` setting: variables set to ``what`` in ``forms``."""
    return Setting[list[Export]](
        name=f"{resource}_env",
        help=f"Variables set to {what} before conftest.py files are imported",
        accepted=accepted(example, forms),
        parse=exports_parser(forms),
        default=[],
        default_text="none",
        metavar="NAME[:FORM]",
        multiple=True,
    )


_failures_key = pytest.StashKey[list[str]]()


def failed(config: pytest.Config, run: Run, placeholders: dict[str, str], message: str) -> None:
    """The export could not get this worker its resource: never leave a variable as it was.

    Each variable gets ``placeholders[name]``, a value of its form that names
    nothing that exists, so that the application fails at once instead of
    using what the shell had set (a real server's database). The process that
    owns the run (a run without workers, or the xdist controller) then stops
    with ``message`` as a usage error before any test; in an xdist worker each
    test fails with it (:func:`failures`), isolated ones included.
    """
    for name, value in placeholders.items():
        run.set_env(name, value)
    if run.lock is not None:
        from worker_utils._plugin import usage_error

        usage_error(message)
    config.stash.setdefault(_failures_key, []).append(message)


def failures(config: pytest.Config) -> str | None:
    """What the exports of this process could not set up, one line each; None if nothing."""
    found: list[str] = config.stash.get(_failures_key, [])
    return "\n".join(found) or None


@pytest.hookspec
def pytest_worker_utils_export(config: pytest.Config, run: Run, controller: bool) -> None:
    """Set the run's exported variables in this process, before conftest.py files are imported.

    Called in each xdist worker, in a run without workers, and in an xdist
    controller (``controller`` True), which runs no tests: settings modules
    import there too (pytest-django sets Django up in every process), so it
    gets values of the same form naming nothing that exists, and nothing is
    made for it. ``config`` is the early config (``config.option`` is not
    filled in yet: read settings with :func:`worker_utils._settings.resolve`).
    """
