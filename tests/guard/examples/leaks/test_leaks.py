import os
import sys


def test_sets_a_variable():
    os.environ["GUARD_EXAMPLE_NEW"] = "1"


def test_removes_a_variable():
    del os.environ["GUARD_EXAMPLE_INHERITED"]


def test_changes_directory(tmp_path):
    os.chdir(tmp_path)


def test_extends_sys_path():
    sys.path.append("/guard-example")


def test_uses_monkeypatch(monkeypatch, tmp_path):
    monkeypatch.setenv("GUARD_EXAMPLE_PATCHED", "1")
    monkeypatch.delenv("GUARD_EXAMPLE_INHERITED", raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend("/guard-example-patched")


def test_changes_nothing():
    assert os.environ["GUARD_EXAMPLE_SESSION"] == "on"
