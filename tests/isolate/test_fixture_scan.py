"""The zygote reads its plugin modules for fixtures once; children register the same fixtures."""

from __future__ import annotations

import functools
import json
import types
from pathlib import Path
from typing import Any

import pytest

from worker_utils.isolate import _fixture_scan

NO_PLUGINS = ("-p", "no:randomly", "-p", "no:cacheprovider")

# Installed elsewhere than the project, so the zygote loads it (-p) and stays clean.
PLUGIN = """
import functools
import pytest

@pytest.fixture
def plugin_value():
    return "from the plugin"

@pytest.fixture(name="plugin_named")
def _plugin_named_impl():
    return "named"

@pytest.fixture(autouse=True)
def plugin_autouse(request):
    request.node.user_properties.append(("plugin_autouse", True))

def _decorate(function):
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        return function(*args, **kwargs)
    return wrapper

@_decorate
@pytest.fixture
def plugin_hidden():
    return "hidden: pytest warns that it cannot discover it"

class FixturesOfAnInstance:
    @pytest.fixture
    def instance_value(self):
        return "from an instance"

class NoFixtures:
    def pytest_report_header(self):
        return None

def pytest_configure(config):
    config.pluginmanager.register(FixturesOfAnInstance(), "wu-scan-instance")
    config.pluginmanager.register(NoFixtures(), "wu-scan-no-fixtures")
"""

CONFTEST = """
import warnings
import pytest
from _pytest.fixtures import FixtureManager

# The names of pytest's tmpdir plugin module that the fixture manager reads, and
# the classes whose namespaces it reads (for instances).
read = set()
classes = set()
lookup = FixtureManager._lookup_in_type_dict

def recording_lookup(self, owner, name):
    if getattr(owner, "__name__", None) == "_pytest.tmpdir":
        read.add(name)
    if isinstance(owner, type):
        classes.add(owner.__qualname__)
    return lookup(self, owner, name)

FixtureManager._lookup_in_type_dict = recording_lookup
session_warnings = []

@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_sessionstart(session):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            return (yield)
        finally:
            session_warnings.extend(f"{w.category.__name__}: {w.message}" for w in caught)
"""

TESTS = """
import json, os
from pathlib import Path
import pytest
import conftest

def record(where, request):
    manager = request._fixturemanager
    names = getattr(manager, "_arg2node2fixturedefs", None) or manager._arg2fixturedefs
    fixtures = {
        name: [
            f"{d.func.__module__}.{d.func.__qualname__} {d.scope} {d.params}"
            for d in manager.getfixturedefs(name, request.node) or ()
        ]
        for name in sorted(names)
    }
    data = {
        "fixtures": fixtures,
        "autouse": request.fixturenames,
        "warnings": conftest.session_warnings,
        "tmpdir_read": sorted(conftest.read),
        "classes_read": sorted(conftest.classes),
        "user_properties": request.node.user_properties,
    }
    Path(os.environ["WU_TEST_RECORD_DIR"], f"{where}.json").write_text(json.dumps(data))

@pytest.fixture
def used(
    plugin_value, plugin_named, instance_value, tmp_path, monkeypatch, capsys, worker_tmp_path
):
    assert (plugin_value, plugin_named) == ("from the plugin", "named")
    assert instance_value == "from an instance"
    assert tmp_path.is_dir() and worker_tmp_path.is_dir()
    monkeypatch.setenv("WU_SCAN", "1")
    print("captured")
    assert capsys.readouterr().out == "captured\\n"
    return capsys

def test_in_process(request, used):
    record("in-process", request)

@pytest.mark.isolated
def test_isolated(request, used):
    record("isolated", request)
"""


@pytest.mark.skipif(
    _fixture_scan.fixture_type() is None, reason="pytest's fixture manager is not the known one"
)
def test_an_isolated_test_sees_the_fixtures_and_warnings_of_a_test_in_process(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path_factory: pytest.TempPathFactory,
    record_dir: Path,
) -> None:
    plugins = tmp_path_factory.mktemp("plugins")
    (plugins / "wu_scan_plugin.py").write_text(PLUGIN)
    monkeypatch.setenv("PYTHONPATH", str(plugins))
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_it=TESTS)
    result = pytester.runpytest_subprocess(*NO_PLUGINS, "-p", "wu_scan_plugin")
    result.assert_outcomes(passed=2)
    here, isolated = (
        json.loads((record_dir / f"{name}.json").read_text()) for name in ("in-process", "isolated")
    )
    assert here["fixtures"]["plugin_named"] == ["wu_scan_plugin._plugin_named_impl function None"]
    assert here["fixtures"]["instance_value"] == [
        "wu_scan_plugin.FixturesOfAnInstance.instance_value function None"
    ]
    assert isolated["fixtures"] == here["fixtures"]
    assert isolated["autouse"] == here["autouse"]
    assert ["plugin_autouse", True] in isolated["user_properties"]
    hidden = (
        "PytestWarning: cannot discover fixture 'plugin_hidden' due to being wrapped in decorators"
    )
    assert isolated["warnings"] == here["warnings"] == [hidden]
    # In process pytest reads every name of the module; the child only its fixtures' (and a
    # stand-in module's own dunder names).
    assert {"Path", "tmp_path", "tmp_path_factory"} <= set(here["tmpdir_read"])
    assert {"tmp_path", "tmp_path_factory"} <= set(isolated["tmpdir_read"])
    assert "Path" not in isolated["tmpdir_read"]
    # Instances: the classes with fixtures are read, the others only in process.
    assert {"Config", "NoFixtures", "FixturesOfAnInstance"} <= set(here["classes_read"])
    assert "FixturesOfAnInstance" in isolated["classes_read"]
    assert not {"Config", "NoFixtures"} & set(isolated["classes_read"])


def _decorate(function: Any) -> Any:
    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return function(*args, **kwargs)

    return wrapper


class _Evil:
    def __getattr__(self, name: str) -> Any:
        raise RuntimeError(name)


def _plugin_module() -> types.ModuleType:
    module = types.ModuleType("wu_scan_unit", "A plugin module.")
    namespace: dict[str, Any] = {
        "fixture_a": pytest.fixture(lambda: 1),
        "_named_impl": pytest.fixture(name="named")(lambda: 2),
        "hidden": _decorate(pytest.fixture(lambda: 3)),
        "wrapped_function": _decorate(len),
        "evil": _Evil(),
        "helper": len,
        "Path": Path,
        "constant": 3,
    }
    vars(module).update(namespace)
    return module


def _names(module: object) -> set[str]:
    assert isinstance(module, types.ModuleType)
    return {name for name in vars(module) if not name.startswith("__")}


@pytest.mark.skipif(
    _fixture_scan.fixture_type() is None, reason="pytest's fixture manager is not the known one"
)
def test_a_stand_in_holds_the_fixtures_and_anything_wrapped_as_the_module_holds_them_now() -> None:
    fixture = _fixture_scan.fixture_type()
    assert fixture is not None
    module = _plugin_module()
    scan = _fixture_scan.PluginScan([("wu_scan_unit", module)], fixture)
    standin = scan.standin(module)
    assert standin is not module
    assert _names(standin) == {"fixture_a", "_named_impl", "hidden", "wrapped_function", "evil"}
    assert all(vars(standin)[name] is vars(module)[name] for name in _names(standin))
    assert standin.__name__ == "wu_scan_unit"  # type: ignore[attr-defined]

    added = pytest.fixture(lambda: 4)
    module.added = added  # type: ignore[attr-defined]
    module.fixture_a = 1  # type: ignore[attr-defined]
    del module.hidden  # type: ignore[attr-defined]
    module.helper = _decorate(len)  # type: ignore[attr-defined]
    assert _names(scan.standin(module)) == {
        "_named_impl",
        "wrapped_function",
        "evil",
        "added",
        "helper",
    }


class _Plain:
    value = 1

    def method(self) -> int:
        return self.value

    @property
    def prop(self) -> int:
        return 2

    @staticmethod
    def static() -> int:
        return 3

    @classmethod
    def make(cls) -> _Plain:
        return cls()


class _WithFixture(_Plain):
    @pytest.fixture
    def fixture_method(self) -> int:
        return 4


class _Descriptor:
    def __get__(self, instance: object, owner: type | None = None) -> int:
        return 5


class _WithDescriptor(_Plain):
    computed = _Descriptor()


class _WithDir(_Plain):
    def __dir__(self) -> list[str]:
        return ["value"]


@pytest.mark.skipif(
    _fixture_scan.fixture_type() is None, reason="pytest's fixture manager is not the known one"
)
def test_an_instance_of_a_class_without_fixtures_gets_an_empty_stand_in_while_it_stays_so() -> None:
    fixture = _fixture_scan.fixture_type()
    assert fixture is not None
    module = types.ModuleType(__name__)
    for cls in (_Plain, _WithFixture, _WithDescriptor, _WithDir):
        setattr(module, cls.__name__, cls)
    scan = _fixture_scan.PluginScan([("wu_scan_classes", module)], fixture)
    plain = _Plain()
    plain.instance_only = pytest.fixture(lambda: 6)  # type: ignore[attr-defined]
    standin = scan.standin(plain)
    assert isinstance(standin, types.ModuleType)
    assert _names(standin) == set()  # pytest reads the class, never the instance's own
    for cls in (_WithFixture, _WithDescriptor, _WithDir):
        instance = cls()
        assert scan.standin(instance) is instance
    prop = _Plain.prop
    try:
        _Plain.prop = property(lambda self: 7)  # type: ignore[method-assign,assignment]
        assert _names(scan.standin(plain)) == set()  # as pytest sets such properties
        _Plain.added = pytest.fixture(lambda self: 8)  # type: ignore[attr-defined]
        assert scan.standin(plain) is plain
    finally:
        _Plain.prop = prop  # type: ignore[method-assign]
        del _Plain.added  # type: ignore[attr-defined]


@pytest.mark.skipif(
    _fixture_scan.fixture_type() is None, reason="pytest's fixture manager is not the known one"
)
def test_conftests_unread_objects_and_modules_with_their_own_dir_are_read_by_pytest_itself() -> (
    None
):
    fixture = _fixture_scan.fixture_type()
    assert fixture is not None
    conftest, own_dir, other = _plugin_module(), _plugin_module(), _plugin_module()
    own_dir.__dir__ = lambda: ["fixture_a"]  # type: ignore[method-assign]
    scan = _fixture_scan.PluginScan(
        [("/p/conftest.py", conftest), ("own", own_dir), ("none", None)], fixture
    )
    assert scan.standin(conftest) is conftest
    assert scan.standin(own_dir) is own_dir
    assert scan.standin(other) is other  # never read
    instance = _WithFixture()  # of a class the scan never saw
    assert scan.standin(instance) is instance
