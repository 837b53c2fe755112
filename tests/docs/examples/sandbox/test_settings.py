import pytest
from myapp.settings import get_settings


@pytest.mark.parametrize("n", range(3))
def test_without_debug_mode(n):
    assert not get_settings().debug  # neither the variable nor the settings of a test before
