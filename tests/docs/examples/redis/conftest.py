# What the examples of docs/redis.md run with: Celery's pytest plugin, Django's settings.
import django
from django.conf import settings as django_settings

pytest_plugins = ("celery.contrib.pytest",)

django_settings.configure(
    CACHES={"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": ""}}
)
django.setup()
