from pathlib import Path

import pytest
import sqlalchemy
from alembic import command
from alembic.config import Config
from sqlalchemy.orm import Session

from worker_utils.postgres import render_url

ALEMBIC_INI = Path(__file__).parents[1] / "alembic.ini"


@pytest.fixture(scope="session")
def worker_postgres_setup():
    """Alembic's migrations, run once per run in the template every worker copies."""

    def migrate(conn):
        # The template's own psycopg connection, handed to Alembic through SQLAlchemy.
        engine = sqlalchemy.create_engine(
            "postgresql+psycopg://",
            creator=lambda: conn,
            poolclass=sqlalchemy.pool.StaticPool,
            pool_reset_on_return=None,
        )
        config = Config(ALEMBIC_INI)
        config.set_main_option("script_location", str(ALEMBIC_INI.parent / "migrations"))
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "head")

    return migrate


@pytest.fixture(scope="session")
def engine(worker_postgres_url):
    """One engine per worker, on the worker's own URL."""
    engine = sqlalchemy.create_engine(render_url(worker_postgres_url, "sqlalchemy").url)
    yield engine
    engine.dispose()


@pytest.fixture
def session(engine):
    with Session(engine) as session:
        yield session
