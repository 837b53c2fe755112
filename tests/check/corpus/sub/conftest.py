# The same autouse name again in a nested conftest.py.
import pytest


@pytest.fixture(autouse=True, scope="session")
def start_database():  # expect: WU502
    yield


@pytest.fixture(autouse=True)
def reset_cache():  # expect: WU502
    yield
