"""The zygote's plugin modules, read once for what pytest's fixture manager acts on.

At session start pytest's fixture manager reads every attribute of every
plugin registered so far (``FixtureManager.parsefactories``) to find fixtures
and, since pytest 9.2, to warn about fixtures hidden behind decorators: about
half of an isolated child's CPU, the same in every child, for modules the
zygote imported (pytest's own, xdist, installed plugins, worker_utils). A fork
keeps those very objects, so the zygote reads each plugin module once and
keeps the names that can matter: a fixture definition, or anything wrapped
(``__wrapped__``), which pytest unwraps looking for a hidden fixture. A child
hands the fixture manager, for such a module, a stand-in module whose
namespace holds only those names (and any name whose value changed since, if it
can matter), so pytest's own code registers the same fixtures, in the same
order, with the same warnings. Conftests, plugin instances, modules of another
type or with their own ``__dir__``, and any pytest whose fixture manager looks
different take pytest's normal path.
"""

from __future__ import annotations

import functools
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
        for name, plugin in plugins:
            if plugin is None or name.endswith("conftest.py") or not _scannable(plugin):
                continue
            namespace = dict(vars(plugin))
            names = frozenset(
                key for key, value in namespace.items() if _may_matter(value, fixture)
            )
            self._found[id(plugin)] = (plugin, namespace, names)

    def standin(self, plugin: object) -> object:
        """What the fixture manager should read for ``plugin``: a stand-in module, or ``plugin``.

        The stand-in holds the names that may matter as found, and any entry
        added or replaced since that may matter: what pytest would act on in
        ``plugin`` now.
        """
        found = self._found.get(id(plugin))
        if found is None or found[0] is not plugin or not _scannable(plugin):
            return plugin
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

    scan = PluginScan(plugins, fixture)
    original = FixtureManager.pytest_plugin_registered

    @functools.wraps(original)
    def pytest_plugin_registered(self: Any, plugin: object, plugin_name: str) -> None:
        original(self, scan.standin(plugin), plugin_name)

    FixtureManager.pytest_plugin_registered = pytest_plugin_registered  # type: ignore[method-assign]
    return scan
