import pytest


@pytest.fixture(scope="module", autouse=True)
def load_orders():
    pass


@pytest.fixture(scope="session", autouse=True)
def connect():
    pass


def test_orders():
    pass
