"""The application's settings, set once per session, name the worker's database."""

from myapp import settings


def test_the_app_settings_name_the_workers_database(worker_redis_url):
    assert worker_redis_url == settings.REDIS_URL
