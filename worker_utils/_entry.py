"""The ``pytest11`` entry point, which pytest registers under the name ``worker_utils``.

It registers :mod:`worker_utils.plugin` under that module's own name, so that
``-p worker_utils.plugin`` and ``pytest_plugins = ["worker_utils.plugin"]``
find the plugin registered once, and ``-p no:worker_utils`` still switches
the whole plugin off (this module is then never loaded).
"""

from __future__ import annotations

import sys

import pytest

pytest_plugins = ["worker_utils.plugin"]


def pytest_plugin_registered(plugin: object, manager: pytest.PytestPluginManager) -> None:
    if plugin is sys.modules[__name__]:
        from worker_utils.plugin import _register

        _register(manager, pytest_plugins)  # before pytest reads the list: see _register()
