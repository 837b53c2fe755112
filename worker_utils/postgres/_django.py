"""pytest-django's test databases as worker namespaces; registered only when pytest-django runs.

With ``worker_utils_postgres_env`` set, the Django settings read the worker's
URL before pytest-django configures Django, so each PostgreSQL alias whose
connection lands in the worker's namespace is *routed*: its test database is
that namespace (named with the run id, recorded, dropped at the end and reaped
after a crash), used as it is (``keepdb``) instead of a ``test_<NAME>_gwN`` of
Django's making. The run's migrations run once, in the template every
worker's namespace is copied from. Other aliases keep pytest-django's names.
"""

from __future__ import annotations

import sys
import urllib.parse
import warnings
from collections.abc import Callable
from typing import Any

import pytest

from worker_utils import postgres
from worker_utils._plugin import get_run
from worker_utils.postgres.plugin import (
    WorkerUtilsPostgresWarning,
    _pg_key,
    _PostgresSettings,
    _worker_key,
)


def _routed(settings: _PostgresSettings, run_uid: str) -> list[str]:
    """The Django aliases whose connections land in this worker's namespace."""
    if settings.exported_url is None or "django.conf" not in sys.modules:
        return []  # nothing exported, or Django not set up: it need not be imported
    from django.conf import settings as django_settings

    if not django_settings.configured:
        return []
    name = postgres.worker_postgres_name(run_uid, prefix=settings.prefix)
    path = urllib.parse.urlsplit(settings.exported_url).path
    database = urllib.parse.unquote(path.lstrip("/"))
    routed = []
    for alias, db in django_settings.DATABASES.items():
        if "postgresql" not in db.get("ENGINE", "") or db.get("NAME") != database:
            continue
        options = str(db.get("OPTIONS", {}).get("options", ""))
        if settings.mode == "database" or f"search_path={name}" in options:
            routed.append(alias)
    return routed


@pytest.fixture(scope="session")
def _worker_django_aliases(request: pytest.FixtureRequest) -> list[str]:
    return _routed(request.config.stash[_pg_key], get_run(request.config).uid)


@pytest.fixture(scope="session")
def worker_postgres_setup(
    _worker_django_aliases: list[str], django_db_blocker: Any, django_db_use_migrations: bool
) -> Callable[[Any], object] | None:
    """Django's migrations, run once per run in the template every worker's namespace copies.

    Only for the aliases that take this worker's exported URL; override it to
    build the template yourself. With ``--nomigrations`` the tables are made
    from the models, as pytest-django makes them, and no migration runs.
    """
    if not _worker_django_aliases:
        return None

    def migrate(conn: Any) -> None:
        if not django_db_use_migrations:
            _without_migrations()
        shown = conn.execute("SHOW search_path").fetchone()[0]  # '"$user", public'
        search_path = ",".join(part.strip() for part in shown.split(","))
        with django_db_blocker.unblock():
            for alias in _worker_django_aliases:
                _migrate(alias, conn.info.dbname, search_path)

    return migrate


def _without_migrations() -> None:
    """What pytest-django's ``--nomigrations`` does, before its own setup would do it."""
    from django.conf import settings

    class DisableMigrations:
        def __contains__(self, item: str) -> bool:
            return True

        def __getitem__(self, item: str) -> None:
            return None

    settings.MIGRATION_MODULES = DisableMigrations()


def _migrate(alias: str, dbname: str, search_path: str) -> None:
    """Run ``migrate`` for ``alias`` in another database and search path, then put it back."""
    from django.core.management import call_command
    from django.db import connections

    connection = connections[alias]
    saved = dict(connection.settings_dict)
    connection.close()
    options = dict(saved.get("OPTIONS") or {})
    options["options"] = f"-csearch_path={search_path}"
    connection.settings_dict.update(NAME=dbname, OPTIONS=options)
    try:
        call_command("migrate", database=alias, run_syncdb=True, verbosity=0, interactive=False)
    finally:
        connection.close()
        connection.settings_dict.clear()
        connection.settings_dict.update(saved)


@pytest.fixture(scope="session")
def django_db_modify_db_settings(
    request: pytest.FixtureRequest,
    django_db_modify_db_settings_parallel_suffix: None,
    _worker_django_aliases: list[str],
    django_db_blocker: Any,
) -> None:
    """The test database of each routed alias is this worker's namespace, made here."""
    from django.conf import settings as django_settings

    if _worker_django_aliases:
        with django_db_blocker.unblock():
            namespace: postgres.WorkerNamespace = request.getfixturevalue(
                "worker_postgres_namespace"
            )
        for alias in _worker_django_aliases:
            db = django_settings.DATABASES[alias]
            db["TEST"] = {**db.get("TEST", {}), "NAME": namespace.database}


def _not_applied(config: pytest.Config, aliases: list[str]) -> list[str]:
    """The routed aliases whose test database is not this worker's namespace after all.

    A conftest's own ``django_db_modify_db_settings`` that does not request
    worker_utils' leaves pytest-django's names in place.
    """
    from django.conf import settings as django_settings

    worker = config.stash.get(_worker_key, None)
    name = None if worker is None else worker.namespace.database
    return [
        alias
        for alias in aliases
        if (django_settings.DATABASES[alias].get("TEST") or {}).get("NAME") != name
    ]


def _routed_now(request: pytest.FixtureRequest, aliases: list[str]) -> bool:
    """Whether every routed alias's test database is this worker's namespace; warn if not."""
    if not aliases:
        return False
    missing = _not_applied(request.config, aliases)
    if missing:
        warnings.warn(
            WorkerUtilsPostgresWarning(
                f"worker_utils: the Django test database of {', '.join(missing)} is not this "
                f"worker's: a conftest.py overrides django_db_modify_db_settings without "
                f"requesting it (def django_db_modify_db_settings(django_db_modify_db_settings)); "
                f"pytest-django makes and drops it, with no isolation across runs"
            ),
            stacklevel=1,
        )
    return not missing


@pytest.fixture(scope="session")
def django_db_keepdb(
    request: pytest.FixtureRequest,
    _worker_django_aliases: list[str],
    django_db_modify_db_settings: None,
) -> bool:
    """True for routed aliases: worker_utils makes and drops their databases, not Django.

    ``--reuse-db`` and ``--create-db`` change nothing for them: every run gets
    new namespaces named with its run id, dropped when it ends.
    """
    if _routed_now(request, _worker_django_aliases):
        return True
    return bool(request.config.getvalue("reuse_db"))


@pytest.fixture(scope="session")
def django_db_createdb(
    request: pytest.FixtureRequest,
    _worker_django_aliases: list[str],
    django_db_modify_db_settings: None,
) -> bool:
    """False for routed aliases: ``--create-db`` would make Django drop and make them again.

    Their databases are this run's own, new and empty but for the template's migrations.
    """
    if _worker_django_aliases and not _not_applied(request.config, _worker_django_aliases):
        return False
    return bool(request.config.getvalue("create_db"))
