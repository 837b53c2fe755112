"""Django's cache writes to the worker's database, under the worker's prefix."""


def test_the_django_cache_uses_the_workers_database_and_prefix(worker_redis, worker_redis_prefix):
    # Imported here: pytest's collection would make the cache, from the settings as they
    # are at import, by looking at the module's attributes.
    from django.core.cache import cache

    cache.set("greeting", "hello")
    assert cache.get("greeting") == "hello"
    keys = [key.decode() for key in worker_redis.keys("*")]
    assert keys
    assert all(key.startswith(worker_redis_prefix) for key in keys), keys
