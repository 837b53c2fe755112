# Environment writes: WU101-WU105. Lines marked "expect" must be reported, no other line may be.
import os
import os as operating_system
import unittest.mock
from os import environ
from os import environ as env
from unittest import mock
from unittest.mock import patch


def test_item_assignment():
    os.environ["APP_MODE"] = "test"  # expect: WU101
    environ["APP_MODE"] = "test"  # expect: WU101
    env["APP_MODE"] = "test"  # expect: WU101
    operating_system.environ["APP_MODE"] = "test"  # expect: WU101
    os.environ["PATH"] += ":/opt/bin"  # expect: WU101


def test_item_deletion():
    del os.environ["APP_MODE"]  # expect: WU102
    del environ["APP_MODE"], os.environ["OTHER"]  # expect: WU102


def test_mutating_methods():
    os.environ.pop("APP_MODE", None)  # expect: WU103
    os.environ.update({"APP_MODE": "test"})  # expect: WU103
    os.environ.setdefault("APP_MODE", "test")  # expect: WU103
    os.environ.clear()  # expect: WU103
    environ.popitem()  # expect: WU103


def test_putenv_and_unsetenv():
    os.putenv("APP_MODE", "test")  # expect: WU104
    os.unsetenv("APP_MODE")  # expect: WU104


@mock.patch.dict(os.environ, {"APP_MODE": "test"})  # expect: WU105
def test_patch_dict_decorator():
    with patch.dict("os.environ", {"APP_MODE": "test"}):  # expect: WU105
        pass
    with unittest.mock.patch.dict(os.environ, clear=True):  # expect: WU105
        pass
    with mock.patch.dict(in_dict=environ, values={"A": "1"}):  # expect: WU105
        pass


def test_suppressed_by_noqa():
    os.environ["APP_MODE"] = "test"  # noqa: WU101
    os.environ.pop("APP_MODE")  # noqa
    os.environ["APP_MODE"] = "test"  # noqa: WU999  # expect: WU101


def test_near_misses(monkeypatch, mocker):
    monkeypatch.setenv("APP_MODE", "test")
    monkeypatch.delenv("APP_MODE", raising=False)
    mode = os.environ["APP_MODE"]
    mode = os.environ.get("APP_MODE", mode)
    copied = os.environ.copy()
    copied["APP_MODE"] = "test"
    copied.pop("APP_MODE")
    settings = {"environ": {}}
    settings["environ"]["APP_MODE"] = "test"
    mocker.patch.dict(os.environ, {"APP_MODE": "test"})
    with mock.patch.dict(copied, {"APP_MODE": "test"}):
        pass
    assert "APP_MODE" in os.environ
