import asyncio

import httpx
import pytest
from service import app


async def post(path):
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
            response = await client.post(path)
            return response.json()


@pytest.mark.parametrize("n", range(2))
def test_each_test_starts_from_empty_tables_and_keys(n):
    assert asyncio.run(post("/visit/ada")) == {"visits": 1, "hits": 1}
