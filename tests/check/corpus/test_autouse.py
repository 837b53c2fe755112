# Autouse fixtures in a test module: WU501, and WU502 across the corpus.
import pytest
import pytest as pt
from pytest import fixture


@pytest.fixture(autouse=True, scope="session")
def start_services():  # expect: WU501
    yield


@fixture(scope="module", autouse=True)
def load_module_data():  # expect: WU501
    yield


@pt.fixture(autouse=True, scope="package", name="package_setup")
async def _package_setup():  # expect: WU501
    yield


@pytest.fixture(autouse=True)
def reset_cache():  # expect: WU502
    yield


@pytest.fixture(autouse=True, scope="session")
def suppressed():  # noqa: WU501
    yield


@pytest.fixture(autouse=True, scope="function")
def near_miss_function_scope():
    yield


@pytest.fixture(scope="session")
def near_miss_not_autouse():
    yield


@pytest.fixture(autouse=False, scope="session")
def near_miss_autouse_false():
    yield


@other.fixture(autouse=True, scope="session")
def near_miss_not_pytest():
    yield


class TestGrouped:
    @pytest.fixture(autouse=True, scope="class")
    def near_miss_class_scope(self):
        yield
