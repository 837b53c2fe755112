import os

import pytest

# Set before any test: the guard takes it as the original state.
os.environ["GUARD_EXAMPLE_INHERITED"] = "x"
os.environ["GUARD_EXAMPLE_CWD"] = os.getcwd()


@pytest.fixture(scope="session", autouse=True)
def session_variable():
    # A session fixture's change is the fixture's, not the first test's.
    os.environ["GUARD_EXAMPLE_SESSION"] = "on"
    yield
    del os.environ["GUARD_EXAMPLE_SESSION"]
