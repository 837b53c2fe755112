import pytest


@pytest.fixture(autouse=True)
def per_test():
    pass


@pytest.fixture
def settings(settings):
    # Overriding a fixture that is not autouse.
    return {**settings, "debug": True}


@pytest.fixture
def reset_cache():
    # Turning an autouse fixture off for this module: the override is not autouse.
    pass


class TestGrouped:
    @pytest.fixture(scope="class", autouse=True)
    def per_class(self):
        pass

    def test_grouped(self, settings):
        assert settings == {"debug": True}


def test_alone():
    pass
