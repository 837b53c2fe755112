import pytest


@pytest.fixture(autouse=True)
def start_services():
    pass


def test_users():
    pass
