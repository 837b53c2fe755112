import pytest


def test_1_in_process(saw):
    saw("in process 1")


@pytest.mark.isolated
def test_2_isolated(saw):
    saw("isolated 2")


def test_3_in_process(saw):
    saw("in process 3")


@pytest.mark.isolated
def test_4_isolated(saw):
    saw("isolated 4")


def test_5_in_process(saw):
    saw("in process 5")


@pytest.mark.isolated
def test_6_isolated_makes_an_extension(counted):
    import psycopg

    with psycopg.connect(counted, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION isn")  # in the worker's schema, first on the search path
