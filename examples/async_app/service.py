"""An async service: settings read at import time, as in production."""

import contextlib
import os

import psycopg
import redis.asyncio
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

DATABASE_URL = os.environ["DATABASE_URL"]
REDIS_URL = os.environ["REDIS_URL"]


@contextlib.asynccontextmanager
async def lifespan(app):
    app.state.redis = redis.asyncio.Redis.from_url(REDIS_URL)
    try:
        yield
    finally:
        await app.state.redis.aclose()


async def visit(request):
    name = request.path_params["name"]
    async with await psycopg.AsyncConnection.connect(DATABASE_URL, autocommit=True) as conn:
        await conn.execute("INSERT INTO visit (name) VALUES (%s)", [name])
        cursor = await conn.execute("SELECT count(*) FROM visit WHERE name = %s", [name])
        (visits,) = await cursor.fetchone()
    hits = await request.app.state.redis.incr(f"hits:{name}")
    return JSONResponse({"visits": visits, "hits": hits})


app = Starlette(routes=[Route("/visit/{name}", visit, methods=["POST"])], lifespan=lifespan)
