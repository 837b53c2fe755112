# A conftest.py may hold broad autouse fixtures; the first definition of a name owns it.
import pytest


@pytest.fixture(autouse=True, scope="session")
def reset_cache():
    yield


@pytest.fixture(autouse=True, scope="session")
def start_database():
    yield
