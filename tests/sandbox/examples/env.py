"""A test that changes process state behind its fixture's back, and one that checks it after.

WU_TEST_FIXTURE names the fixture the first test uses: worker_env or monkeypatch.
"""

import os
import sys

import pytest

BEFORE = []


def state():
    environ = {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}
    return environ, os.getcwd(), list(sys.path)


def test_changes_everything(request, tmp_path):
    BEFORE.append(state())
    env = request.getfixturevalue(os.environ["WU_TEST_FIXTURE"])
    if isinstance(env, pytest.MonkeyPatch):
        env.setenv("SANDBOX_THROUGH_FIXTURE", "1")
    else:
        env["SANDBOX_THROUGH_FIXTURE"] = "1"
        assert env["SANDBOX_THROUGH_FIXTURE"] == os.environ["SANDBOX_THROUGH_FIXTURE"]
    # What code under test does: straight to os.environ, os.chdir and sys.path.
    os.environ["SANDBOX_BEHIND_ITS_BACK"] = "1"
    os.environ["SANDBOX_INHERITED"] = "changed"
    del os.environ["SANDBOX_REMOVED"]
    os.chdir(tmp_path)
    sys.path.insert(0, str(tmp_path))
    sys.path.append("/sandbox-example")
    sys.path.reverse()


def test_sees_the_original_state():
    assert state() == BEFORE[0]
