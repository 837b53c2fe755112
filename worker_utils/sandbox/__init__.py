"""The state sandbox: process state put back after every test, singletons reset.

Tests change process state and forget: environment variables, the working
directory, ``sys.path``, and application singletons (a settings object cached
at first use, an ``lru_cache``'d loader, a registry of transports). Under
``pytest -n`` the test that pays is whichever one the scheduler puts next.

:func:`register_reset` declares a singleton's reset once for the whole suite;
the pytest plugin calls every registered reset after each test (or at the end
of the scope it was registered for). :class:`EnvSandbox` is the mapping behind
the ``worker_env`` fixture, which puts ``os.environ``, the working directory and
``sys.path`` back exactly after the test.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable, Iterator, MutableMapping
from dataclasses import dataclass
from pathlib import Path

from worker_utils.errors import WorkerUtilsError

__all__ = [
    "SCOPES",
    "EnvSandbox",
    "Reset",
    "ResetError",
    "register_reset",
    "registered_resets",
    "resolve_reset",
    "unregister_reset",
]

SCOPES = ("function", "class", "module", "package", "session")
# pytest sets it around every phase of every test and removes it itself.
_PYTEST_OWNED = frozenset({"PYTEST_CURRENT_TEST"})


class ResetError(WorkerUtilsError, ValueError):
    """A reset was declared with a bad name or scope, or cannot be found."""


@dataclass(frozen=True)
class Reset:
    """A registered reset: called with no arguments at the end of its scope."""

    name: str
    function: Callable[[], object]
    scope: str


_registry: dict[str, Reset] = {}


def _identity(function: Callable[[], object]) -> tuple[object, ...]:
    # A conftest imported again (pytester, importlib mode) makes a new function
    # object for the same reset: compare by where it is defined.
    owner = getattr(function, "__self__", None)
    if owner is not None:
        function = owner
    return (getattr(function, "__module__", None), getattr(function, "__qualname__", function))


def register_reset(function: Callable[[], object], *, name: str, scope: str = "function") -> None:
    """Declare once that ``function()`` resets a singleton; pytest calls it after each test.

    ``register_reset(get_settings.cache_clear, name="settings")`` at the import
    of a conftest (or of the application's test support module) replaces the
    autouse fixtures that modules would otherwise each define. Resets run after
    the test's fixtures are torn down, in the order they were registered.

    Args:
        function: Called with no arguments.
        name: Names the reset in errors; registering the same name again with
            the same function is allowed (modules may be imported twice).
        scope: ``"function"`` (after every test), ``"class"``, ``"module"``,
            ``"package"`` (after the last test of one) or ``"session"``.

    Raises:
        ResetError: A bad scope, or ``name`` already taken by another function.
    """
    if scope not in SCOPES:
        raise ResetError(
            f"register_reset({name!r}): scope {scope!r} is not one of {', '.join(SCOPES)}"
        )
    if not callable(function):
        raise ResetError(f"register_reset({name!r}): {function!r} is not callable")
    old = _registry.get(name)
    if old is not None and _identity(old.function) != _identity(function):
        raise ResetError(
            f"register_reset({name!r}): the name is taken by {_describe(old.function)}; "
            f"give this reset another name, or call unregister_reset({name!r}) first"
        )
    _registry[name] = Reset(name, function, scope)


def unregister_reset(name: str) -> None:
    """Remove the reset registered as ``name``, if there is one."""
    _registry.pop(name, None)


def registered_resets() -> list[Reset]:
    """Return the registered resets, in the order they were first registered."""
    return list(_registry.values())


def _describe(function: Callable[..., object]) -> str:
    owner = getattr(function, "__self__", None)
    name = getattr(function, "__qualname__", None)
    if owner is not None and hasattr(owner, "__qualname__"):
        function, name = owner, f"{owner.__qualname__}.{getattr(function, '__name__', '')}"
    module = getattr(function, "__module__", None)
    return f"{module}.{name}" if module and name else repr(function)


def resolve_reset(text: str, *, setting: str) -> Callable[[], object]:
    """Return the reset named by ``text``, as the ``worker_utils_reset`` ini option gives it.

    ``package.module:name.attr`` or ``package.module.name``; when the object has
    a ``cache_clear`` (a ``functools.lru_cache`` or ``cache`` function), that is
    the reset.

    Raises:
        ResetError: Nothing importable or callable has that name; the message
            names ``setting``.
    """
    module_name, colon, attributes = text.strip().partition(":")
    parts = attributes.split(".") if colon else []
    if not colon:
        module_name, _, last = module_name.rpartition(".")
        parts = [last]
    target: object = None
    error = ""
    while module_name:
        try:
            target = importlib.import_module(module_name)
            break
        except ImportError as exc:
            error = f"{type(exc).__name__}: {exc}"
            if colon or "." not in module_name:
                break
            module_name, _, last = module_name.rpartition(".")
            parts.insert(0, last)
            target = None
    if target is None:
        raise ResetError(
            f"{setting}: cannot import {text.strip()!r} ({error or 'no module named'}); "
            f"give module:attribute or a dotted path to a function"
        )
    for part in parts:
        try:
            target = getattr(target, part)
        except AttributeError:
            raise ResetError(
                f"{setting}: {text.strip()!r} has no attribute {part!r}; "
                f"give module:attribute or a dotted path to a function"
            ) from None
    clear = getattr(target, "cache_clear", None)
    if callable(clear):
        return clear  # type: ignore[no-any-return]
    if not callable(target):
        raise ResetError(
            f"{setting}: {text.strip()!r} is not callable; name a function that resets the "
            f"singleton, or a functools.lru_cache function"
        )
    return target


class EnvSandbox(MutableMapping[str, str]):
    """``os.environ``, the working directory and ``sys.path``, put back exactly by :meth:`restore`.

    Reads and writes go to the real ``os.environ``, so code under test sees
    them. :meth:`restore` returns all three to their state when the sandbox was
    made, however they were changed: through the sandbox, through
    ``os.environ``, ``os.chdir`` or ``sys.path`` directly, or by the code under test.
    """

    def __init__(self) -> None:
        self._environ = dict(os.environ)
        self._cwd = os.getcwd()
        self._sys_path = list(sys.path)

    def __getitem__(self, name: str) -> str:
        return os.environ[name]

    def __setitem__(self, name: str, value: str) -> None:
        os.environ[name] = value

    def __delitem__(self, name: str) -> None:
        del os.environ[name]

    def __iter__(self) -> Iterator[str]:
        return iter(os.environ.copy())

    def __len__(self) -> int:
        return len(os.environ)

    def chdir(self, path: str | os.PathLike[str]) -> None:
        """Change the working directory until the test ends."""
        os.chdir(path)

    def syspath_prepend(self, path: str | os.PathLike[str]) -> None:
        """Put ``path`` first on ``sys.path`` until the test ends."""
        sys.path.insert(0, str(Path(path)))
        importlib.invalidate_caches()

    def restore(self) -> None:
        """Put ``os.environ``, the working directory and ``sys.path`` back as they were."""
        for name in [name for name in os.environ if name not in self._environ]:
            if name not in _PYTEST_OWNED:
                del os.environ[name]
        for name, value in self._environ.items():
            if os.environ.get(name) != value and name not in _PYTEST_OWNED:
                os.environ[name] = value
        try:
            moved = os.getcwd() != self._cwd
        except OSError:  # the directory the test went to is gone
            moved = True
        if moved:
            os.chdir(self._cwd)
        if sys.path != self._sys_path:
            sys.path[:] = self._sys_path
            importlib.invalidate_caches()
