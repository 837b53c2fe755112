"""The zygote starts pytest up to the first conftest, and only while nothing it loaded is unsafe."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from worker_utils.isolate import _child, _zygote

NO_PLUGINS = ("-p", "no:randomly", "-p", "no:cacheprovider")


def test_the_zygote_never_imports_a_conftest_and_children_share_their_compiled_code(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, record_dir: Path
) -> None:
    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")  # as in this project's shells
    pytester.makeconftest(
        """
        import os
        from pathlib import Path

        Path(os.environ["WU_TEST_RECORD_DIR"], f"conftest-{os.getpid()}").touch()
        """
    )
    pytester.makepyfile(
        """
        import json, os, sys
        from pathlib import Path
        import pytest

        pytestmark = pytest.mark.isolated

        def record(name):
            cache = Path(os.environ["WORKER_UTILS_RUN_DIR"], "isolate", "pycache")
            data = {
                "pid": os.getpid(),
                "ppid": os.getppid(),
                "cached": sorted(path.name for path in cache.rglob("*.pyc")),
            }
            Path(os.environ["WU_TEST_RECORD_DIR"], name).write_text(json.dumps(data))

        def test_first():
            record("first")

        def test_second():
            record("second")
        """
    )
    pytester.runpytest_subprocess(*NO_PLUGINS).assert_outcomes(passed=2)
    first, second = (json.loads((record_dir / name).read_text()) for name in ("first", "second"))
    zygote = first["ppid"]
    assert second["ppid"] == zygote
    imported = {int(path.name.split("-")[1]) for path in record_dir.glob("conftest-*")}
    assert zygote not in imported
    assert {first["pid"], second["pid"]} < imported  # and the test process
    # The second child found what the first compiled, in the run's directory.
    pyc = "test_the_zygote_never_imports_a_conftest_and_children_share_their_compiled_code"
    assert any(name.startswith(pyc) for name in second["cached"])
    assert any(name.startswith("conftest") for name in second["cached"])
    assert not list(pytester.path.rglob("__pycache__"))


def test_a_plugin_of_the_project_makes_the_zygote_plain(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        localplugin="",
        test_it="""
        import pytest

        @pytest.mark.isolated
        def test_isolated():
            pass
        """,
    )
    result = pytester.runpytest_subprocess(
        *NO_PLUGINS, "-p", "localplugin", "-v", "--worker-utils-summary=short"
    )
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [
            "worker_utils: master: isolate each isolated process starts pytest itself: "
            f"a plugin imported localplugin of the project under test "
            f"({pytester.path / 'localplugin.py'})"
        ]
    )


def test_an_extension_module_or_a_module_of_the_project_makes_a_process_unclean(
    native_module: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = set(sys.modules)
    monkeypatch.syspath_prepend(str(native_module.parent))
    importlib.import_module("nativeonce")
    assert _zygote.unclean(before, str(tmp_path)) == (
        f"a plugin imported the extension module nativeonce ({native_module})"
    )
    del sys.modules["nativeonce"]
    module = tmp_path / "projectmodule.py"
    module.write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.import_module("projectmodule")
    assert _zygote.unclean(before, str(tmp_path)) == (
        f"a plugin imported projectmodule of the project under test ({module})"
    )
    del sys.modules["projectmodule"]


def test_a_thread_or_a_native_thread_makes_a_process_unclean(native_module: Path) -> None:
    code = (
        "import sys, threading\n"
        "from worker_utils.isolate import _zygote\n"
        f"sys.path.insert(0, {str(native_module.parent)!r})\n"
        "before = {*sys.modules, 'nativeonce'}  # only its thread counts here\n"
        "print(_zygote.unclean(before, '/nonexistent'))\n"
        "import nativeonce  # starts a native thread, which holds a lock\n"
        "print(_zygote.unclean(before, '/nonexistent'))\n"
        "stop = threading.Event()\n"
        "threading.Thread(target=stop.wait, name='plugin-thread', daemon=True).start()\n"
        "print(_zygote.unclean(before, '/nonexistent'))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.splitlines() == [
        "None",
        "a plugin started 1 native thread",
        "a plugin started a thread (plugin-thread)",
    ]


@pytest.mark.parametrize(
    ("nodeids", "wanted"),
    [
        (["a/test_x.py::test_y"], {"a/test_x.py": {"test_y"}}),
        (["a/test_x.py::test_y[1::2]"], {"a/test_x.py": {"test_y"}}),
        (
            ["t.py::TestX::TestY::test_z", "t.py::TestX::test_w[a]", "t.py::test_v"],
            {
                "t.py": {"TestX", "test_v"},
                "t.py::TestX": {"TestY", "test_w"},
                "t.py::TestX::TestY": {"test_z"},
            },
        ),
    ],
)
def test_a_child_collects_only_the_names_on_the_way_to_its_tests(
    nodeids: list[str], wanted: dict[str, set[str]]
) -> None:
    assert _child.wanted_names(nodeids) == wanted
