"""The zygote's plugin modules and classes, read once for what pytest's fixture manager acts on.

At session start pytest's fixture manager reads every attribute of every
plugin registered so far (``FixtureManager.parsefactories``) to find fixtures
and, since pytest 9.2, to warn about fixtures hidden behind decorators: about
a third of an isolated child's CPU, the same in every child, for modules the
zygote imported (pytest's own, xdist, installed plugins, worker_utils) and
instances of their classes. A fork keeps those very objects, so the zygote
reads them once:

- for each plugin module, the names that may matter: a fixture definition, or
  anything wrapped (``__wrapped__``), which pytest unwraps looking for a hidden
  fixture. A child hands the fixture manager a stand-in module whose namespace
  holds only those names (and any entry changed since that may matter), so
  pytest's own code registers the same fixtures, in the same order, with the
  same warnings;
- for each class of the plugin modules and of the plugin instances, whether
  pytest finds nothing in it at all (no fixture, nothing wrapped around one,
  no descriptor that could run code, no ``__dir__`` of its own). An instance
  of such a class, unchanged in that respect, gets an empty stand-in.

Conftests, other objects, and any pytest whose fixture manager looks
different take pytest's normal path.
"""

from __future__ import annotations

import functools
import inspect
import types
from collections.abc import Iterable
from typing import Any

_MISSING = object()


def fixture_type() -> type | None:
    """pytest's fixture definition type; None where pytest's internals are not the known ones."""
    try:
        from _pytest.fixtures import FixtureFunctionDefinition, FixtureManager
    except ImportError:  # pytest before 8.4: fixtures are marked functions
        return None
    if not hasattr(FixtureManager, "parsefactories") or not hasattr(
        FixtureManager, "pytest_plugin_registered"
    ):
        return None
    return FixtureFunctionDefinition


def _may_matter(value: object, fixture: type) -> bool:
    """Whether pytest's fixture manager may act on a module's namespace entry ``value``.

    It registers a fixture definition, and warns about one it finds by
    following ``__wrapped__``; it only looks at anything else.
    """
    if type(value) is fixture:
        return True
    try:
        return hasattr(value, "__wrapped__")
    except Exception:
        return True  # an object that raises on look-up: pytest's own code decides


# Descriptors whose __get__, when pytest reads a class attribute, runs no code of a plugin's.
_PLAIN_DESCRIPTORS = (
    types.FunctionType,
    property,
    functools.cached_property,
    types.MemberDescriptorType,
    types.GetSetDescriptorType,
    types.WrapperDescriptorType,
    types.MethodDescriptorType,
    types.BuiltinFunctionType,
    types.ClassMethodDescriptorType,
    staticmethod,
)


def _read_without_code(value: object) -> bool:
    """Whether reading ``value`` as a class attribute runs no code of a plugin's."""
    if not hasattr(type(value), "__get__") or isinstance(value, _PLAIN_DESCRIPTORS):
        return True
    return isinstance(value, classmethod) and type(value.__func__) is types.FunctionType


def _inert(cls: type, klass: type, name: str, value: object, fixture: type) -> bool:
    """Whether the fixture manager finds nothing in entry ``name`` of ``klass``, a base of ``cls``.

    For an instance of ``cls`` it reads the entry (a fixture definition, or
    one it finds by following ``__wrapped__``, would be acted on) and the
    class's attribute, which runs the entry's ``__get__``: only descriptors
    known to run no code are inert. A class's own ``__dir__`` is never inert.
    """
    if name == "__dir__" and klass is not object:
        return False
    if not _read_without_code(value):
        return False
    if type(value) is fixture:
        return False
    try:
        unwrapped = inspect.unwrap(value, stop=lambda o: type(o) is fixture)  # type: ignore[arg-type]
    except Exception:
        unwrapped = None  # pytest gives up on it too
    if type(unwrapped) is fixture:
        return False
    try:
        found = getattr(cls, name)
    except Exception:
        return True
    return type(found) is not fixture


def _class_namespaces(
    cls: type, fixture: type
) -> tuple[tuple[type, ...], list[dict[str, object]]] | None:
    """The namespaces of ``cls`` and its bases, if the fixture manager finds nothing in them.

    For an instance, pytest reads each name's entry in the class's namespaces
    and the class's attribute: with only inert entries, and a metaclass that
    adds only functions, it finds nothing, whatever the instance holds.
    """
    for meta in inspect.getmro(type(cls)):
        if meta not in (type, object) and not all(map(_read_without_code, vars(meta).values())):
            return None
    namespaces = []
    for klass in cls.__mro__:
        namespace = dict(vars(klass))
        if not all(_inert(cls, klass, name, value, fixture) for name, value in namespace.items()):
            return None
        namespaces.append(namespace)
    return cls.__mro__, namespaces


def _scannable(plugin: object) -> bool:
    # A module's dir() is its namespace, and getattr() its entries, unless it
    # is of another type or has its own __dir__.
    return type(plugin) is types.ModuleType and "__dir__" not in vars(plugin)


class PluginScan:
    """The plugin modules as found once, with the names in each that may matter.

    Args:
        plugins: (name, plugin) pairs, as :meth:`pytest.PytestPluginManager.list_name_plugin`
            gives them; only modules other than conftests are read.
        fixture: pytest's fixture definition type (:func:`fixture_type`).
    """

    def __init__(self, plugins: Iterable[tuple[str, object]], fixture: type) -> None:
        self.fixture = fixture
        self._found: dict[int, tuple[object, dict[str, object], frozenset[str]]] = {}
        self._empty: dict[type, tuple[tuple[type, ...], list[dict[str, object]]]] = {}
        classes: list[type] = []
        for name, plugin in plugins:
            if plugin is None or name.endswith("conftest.py"):
                continue
            if not isinstance(plugin, types.ModuleType):
                classes.append(type(plugin))
                continue
            if not _scannable(plugin):
                continue
            namespace = dict(vars(plugin))
            names = frozenset(
                key for key, value in namespace.items() if _may_matter(value, fixture)
            )
            self._found[id(plugin)] = (plugin, namespace, names)
            # The classes of the plugin instances that pytest_configure will make.
            module = plugin.__name__
            classes += (
                v for v in namespace.values() if isinstance(v, type) and v.__module__ == module
            )
        for cls in classes:
            found = _class_namespaces(cls, fixture)
            if found is not None:
                self._empty[cls] = found

    def standin(self, plugin: object) -> object:
        """What the fixture manager should read for ``plugin``: a stand-in module, or ``plugin``.

        The stand-in holds the names that may matter as found, and any entry
        added or replaced since that may matter: what pytest would act on in
        ``plugin`` now.
        """
        found = self._found.get(id(plugin))
        if found is None or found[0] is not plugin or not _scannable(plugin):
            return self._instance_standin(plugin)
        _, before, names = found
        kept = {}
        for name, value in vars(plugin).items():
            if before.get(name, _MISSING) is value:
                if name in names:
                    kept[name] = value
            elif _may_matter(value, self.fixture):
                kept[name] = value
        module = types.ModuleType(plugin.__name__, plugin.__doc__)  # type: ignore[attr-defined]
        vars(module).update(kept)
        return module

    def _instance_standin(self, plugin: object) -> object:
        # An instance of a class in which nothing may matter, then and now (pytest
        # sets a property or two on its classes in each process): an empty
        # module, in which the fixture manager finds nothing either.
        cls = type(plugin)
        found = self._empty.get(cls)
        if found is None:
            return plugin
        mro, namespaces = found
        if cls.__mro__ != mro:
            return plugin
        for klass, before in zip(mro, namespaces, strict=True):
            for name, value in vars(klass).items():
                if before.get(name, _MISSING) is not value and not _inert(
                    cls, klass, name, value, self.fixture
                ):
                    return plugin
        return types.ModuleType(cls.__qualname__)


#: The scan that pytest's fixture manager uses in this process, if any.
installed: PluginScan | None = None


def prepare(plugins: Iterable[tuple[str, object]]) -> PluginScan | None:
    """Read the plugin modules of ``plugins`` and have pytest's fixture manager read stand-ins.

    Called in the zygote before it forks: every child then finds the result.
    Returns None, and changes nothing, where pytest's fixture manager is not
    the one this was written for.
    """
    fixture = fixture_type()
    if fixture is None:
        return None
    from _pytest.fixtures import FixtureManager

    global installed
    original = FixtureManager.pytest_plugin_registered

    def pytest_plugin_registered(self: Any, plugin: object, plugin_name: str) -> None:
        try:
            holder = scan.standin(plugin)
        except Exception:  # a bug of ours must not fail the session: pytest reads it all
            holder = plugin
        original(self, holder, plugin_name)

    # Not functools.wraps: a __wrapped__ would make the fixture manager's class one
    # that pytest must read in full.
    vars(pytest_plugin_registered).update(vars(original))
    pytest_plugin_registered.__doc__ = original.__doc__
    # Before the scan, which then finds the fixture manager's class as it will stay.
    FixtureManager.pytest_plugin_registered = pytest_plugin_registered  # type: ignore[method-assign]
    try:
        scan = PluginScan(plugins, fixture)
    except Exception:  # a plugin's object that defies reading: pytest reads everything
        FixtureManager.pytest_plugin_registered = original  # type: ignore[method-assign]
        return None
    installed = scan
    return scan
