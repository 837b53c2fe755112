"""A worker's own URL, computed from the server's: pure string work, then used by real drivers."""

from __future__ import annotations

import pytest
import sqlalchemy

from worker_utils.postgres import render_url, worker_url

SERVER = "postgresql://postgres@db.example/test"


def test_schema_mode_keeps_the_database_and_sets_the_search_path_in_options() -> None:
    assert worker_url(SERVER, "test_worker_ab12_gw0", "schema") == (
        "postgresql://postgres@db.example/test"
        "?options=-csearch_path%3Dtest_worker_ab12_gw0%2Cpublic"
    )


@pytest.mark.parametrize("kind", ["schema", "database"])
def test_a_postgres_scheme_becomes_postgresql_which_sqlalchemy_knows(kind: str) -> None:
    url = worker_url("postgres://postgres@db.example/test", "ns", kind)
    assert url.startswith("postgresql://postgres@db.example/"), url
    assert sqlalchemy.engine.make_url(url).get_backend_name() == "postgresql"


def test_database_mode_names_the_workers_database() -> None:
    assert worker_url(SERVER + "?dbname=other", "test_worker_ab12_gw0", "database") == (
        "postgresql://postgres@db.example/test_worker_ab12_gw0"
    )


def test_the_application_name_lock_timeout_and_the_servers_own_options_are_kept() -> None:
    url = worker_url(
        SERVER + "?sslmode=disable&options=-cwork_mem%3D8MB",
        "ns",
        "schema",
        application_name="ns",
        extension_schema="ext",
        lock_timeout="5s",
    )
    assert url == (
        "postgresql://postgres@db.example/test?sslmode=disable&application_name=ns"
        "&options=-cwork_mem%3D8MB%20-csearch_path%3Dns%2Cext%20-clock_timeout%3D5s"
    )


def test_a_lock_timeout_of_zero_leaves_the_servers() -> None:
    assert "lock_timeout" not in worker_url(SERVER, "ns", "schema", lock_timeout="0")


def test_a_conninfo_string_becomes_a_url() -> None:
    assert worker_url("host=db.example port=6000 user=postgres dbname=test", "ns", "database") == (
        "postgresql://postgres@db.example:" + "6000/ns"
    )
    assert worker_url("host=/run/postgresql dbname=test", "ns", "schema") == (
        "postgresql:///test?host=%2Frun%2Fpostgresql&options=-csearch_path%3Dns%2Cpublic"
    )


def test_an_unknown_kind_names_the_setting() -> None:
    with pytest.raises(ValueError) as info:
        worker_url(SERVER, "ns", "table")
    assert str(info.value) == (
        "worker_utils_postgres_mode: found 'table'; use one of schema, database"
    )


def test_asyncpg_gets_the_options_as_server_settings() -> None:
    url = worker_url(SERVER, "ns", "schema", application_name="ns", lock_timeout="5s")
    assert render_url(url, driver="asyncpg") == (
        SERVER,
        {"search_path": "ns,public", "lock_timeout": "5s", "application_name": "ns"},
    )
    assert render_url(url, driver="sqlalchemy+asyncpg").url == (
        "postgresql+asyncpg://postgres@db.example/test"
    )
    assert render_url(url, driver="sqlalchemy").url == url.replace(
        "postgresql://", "postgresql+psycopg://"
    )
    assert render_url(url) == (url, {})


def test_an_unknown_driver_is_named() -> None:
    with pytest.raises(ValueError) as info:
        render_url(SERVER, driver="pg8000")
    assert str(info.value) == (
        "render_url: driver 'pg8000'; use one of libpq, psycopg, psycopg2, sqlalchemy, "
        "asyncpg, sqlalchemy+asyncpg"
    )
