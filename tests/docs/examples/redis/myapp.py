# The rest of the application, for the other examples of docs/redis.md.
import types

import redis

settings = types.SimpleNamespace(REDIS_URL=None)  # the application's settings module


def run_app(redis_url):
    """Run the application once on ``redis_url``: it counts a visit there."""
    client = redis.Redis.from_url(redis_url)
    try:
        assert client.incr("hits:script") == 1  # a database of its own, empty
    finally:
        client.close()
