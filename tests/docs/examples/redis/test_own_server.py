"""Every Redis example of the page runs on the server the suite started itself."""

from urllib.parse import urlsplit


def test_the_workers_database_is_on_the_suites_own_server(
    worker_redis_url, worker_redis_server_url
):
    assert urlsplit(worker_redis_url).port == urlsplit(worker_redis_server_url).port != 6379
