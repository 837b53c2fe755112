import pytest


@pytest.fixture(autouse=True)
def reset_cache():
    pass


@pytest.fixture(scope="session", autouse=True)
def start_services():
    pass


@pytest.fixture
def settings():
    return {}
