"""A transport a test opens is closed after it, by the reset the conftest registers."""

import pytest
from myapp import transports


@pytest.mark.parametrize("n", range(4))
def test_each_test_starts_with_no_transport_open(n):
    assert transports.open_transports() == []
    transports.open_transport(f"test {n}")
