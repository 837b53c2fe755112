import pytest


@pytest.mark.isolated
def test_1_isolated_first(saw):
    saw("isolated 1")  # its worker holds nothing yet: it makes each resource on request


def test_2_in_process(saw):
    saw("in process 2")


@pytest.mark.isolated
def test_3_isolated(saw):
    saw("isolated 3")


def test_4_in_process(saw):
    saw("in process 4")
