import os
import sys


def test_sees_the_original_state():
    assert "GUARD_EXAMPLE_NEW" not in os.environ
    assert os.environ["GUARD_EXAMPLE_INHERITED"] == "x"
    assert os.environ["GUARD_EXAMPLE_SESSION"] == "on"
    assert os.getcwd() == os.environ["GUARD_EXAMPLE_CWD"]
    assert "/guard-example" not in sys.path
