"""Tests that open connections until a full server refuses one: raw psycopg, SQLAlchemy, Django."""

import psycopg
import pytest

from worker_utils.postgres import render_url

held = []


@pytest.fixture(autouse=True)
def _close_held():
    yield  # open while the failure is reported: the report counts them
    while held:
        held.pop().close()


def fill(connect):
    """Open connections until the server refuses one: that refusal fails the test."""
    while True:
        held.append(connect())


def test_psycopg(worker_postgres_url):
    fill(lambda: psycopg.connect(worker_postgres_url))


def test_a_role_without_the_reserved_slots(worker_postgres_url):
    fill(lambda: psycopg.connect(worker_postgres_url, user="wu_app"))


def test_sqlalchemy(worker_postgres_url):
    import sqlalchemy
    from sqlalchemy.pool import NullPool

    url = render_url(worker_postgres_url, "sqlalchemy").url
    fill(sqlalchemy.create_engine(url, poolclass=NullPool).connect)


def test_django(worker_postgres_url):
    import django
    from django.conf import settings
    from django.db import connections

    params = psycopg.conninfo.conninfo_to_dict(worker_postgres_url)
    settings.configure(
        DATABASES={
            "default": {
                "ENGINE": "django.db.backends.postgresql",
                "NAME": params["dbname"],
                "USER": params["user"],
                "HOST": params["host"],
                "PORT": params["port"],
                "OPTIONS": {"application_name": params["application_name"]},
            }
        }
    )
    django.setup()

    def connect():
        connection = connections.create_connection("default")
        connection.ensure_connection()
        return connection

    fill(connect)
