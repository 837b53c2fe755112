import pytest


@pytest.mark.parametrize("n", range(3))
def test_each_test_starts_from_empty_tables_and_keys(client, n):
    response = client.post("/visit/ada")
    assert response.json() == {"visits": 1, "hits": 1}
