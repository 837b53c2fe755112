import logging
import sys

import pytest


@pytest.fixture
def broken():
    raise RuntimeError("setup broke")


def test_passes(record_property):
    print("to stdout")
    print("to stderr", file=sys.stderr)
    logging.getLogger("app").warning("a log record")
    record_property("answer", 42)


def test_fails():
    print("before the failure")
    logging.getLogger("app").error("about to fail")
    assert [1, 2] == [1, 3]


def test_errors(broken):
    pass


def test_skips():
    pytest.skip("not here")


@pytest.mark.xfail(reason="known bug")
def test_xfails():
    raise AssertionError()


@pytest.mark.xfail(reason="fixed meanwhile", strict=True)
def test_xpasses_strict():
    pass


def test_warns():
    import warnings

    warnings.warn("a user warning", UserWarning, stacklevel=2)
