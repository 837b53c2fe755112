"""Tests whose own connections a full server refuses: raw psycopg, SQLAlchemy and Django."""

import psycopg
import pytest

from worker_utils.postgres import render_url

held = []


@pytest.fixture(autouse=True)
def _close_held():
    yield  # open while the failure is reported: the report counts them
    while held:
        held.pop().close()


def fill(url, **kwargs):
    """Connect until the server refuses; return the refusal."""
    while True:
        try:
            held.append(psycopg.connect(url, **kwargs))
        except psycopg.OperationalError as exc:
            return exc


def test_psycopg(worker_postgres_url):
    fill(worker_postgres_url)
    psycopg.connect(worker_postgres_url)


def test_a_role_without_the_reserved_slots(worker_postgres_url):
    raise fill(worker_postgres_url, user="wu_app")


def test_sqlalchemy(worker_postgres_url):
    import sqlalchemy

    engine = sqlalchemy.create_engine(render_url(worker_postgres_url, "sqlalchemy").url)
    fill(worker_postgres_url)
    try:
        engine.connect()
    finally:
        engine.dispose()


def test_django(worker_postgres_url):
    import django
    from django.conf import settings
    from django.db import connection

    params = psycopg.conninfo.conninfo_to_dict(worker_postgres_url)
    settings.configure(
        DATABASES={
            "default": {
                "ENGINE": "django.db.backends.postgresql",
                "NAME": params["dbname"],
                "USER": params["user"],
                "HOST": params["host"],
                "PORT": params["port"],
            }
        }
    )
    django.setup()
    fill(worker_postgres_url)
    connection.ensure_connection()
