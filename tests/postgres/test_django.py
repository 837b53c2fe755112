"""pytest-django: the exported URL reaches Django's settings, its test database is the worker's."""

from __future__ import annotations

import pytest

from tests.postgres.conftest import URL, databases, schemas

pytest.importorskip("pytest_django")

PREFIX = "wu_dj"
# Django reads the URL when pytest-django imports the settings, in its own early hook.
SETTINGS = """
import os

import dj_database_url

SECRET_KEY = "test"
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth"]
DATABASES = {"default": dj_database_url.parse(os.environ["DATABASE_URL"])}
"""
TEST = """
import json

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.db import connection


@pytest.mark.django_db
@pytest.mark.parametrize("n", range(2))
def test_django(n):
    User.objects.create_user(f"user{n}")
    assert User.objects.count() == 1
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_schema(), current_database()")
        schema, database = cursor.fetchone()
        if schema == "public":  # database mode
            cursor.execute(
                "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s",
                [database],
            )
        else:
            cursor.execute("SELECT obj_description(to_regnamespace(%s), 'pg_namespace')", [schema])
        owner = json.loads(cursor.fetchone()[0])
    name = database if schema == "public" else schema
    print("WORKER", name, settings.DATABASES["default"]["NAME"], owner["name"], owner["run"])
"""


def django_project(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    prefix: str,
    *,
    mode: str = "schema",
    settings: str = SETTINGS,
    **files: str,
) -> None:
    """A pytest-django project whose settings read DATABASE_URL, exported by worker_utils."""
    monkeypatch.setenv("WORKER_UTILS_POSTGRES_URL", URL)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    pytester.makeini(
        f"""
        [pytest]
        DJANGO_SETTINGS_MODULE = dj_settings
        pythonpath = .
        worker_utils_postgres_env = DATABASE_URL
        worker_utils_postgres_mode = {mode}
        worker_utils_postgres_prefix = {prefix}
        """
    )
    pytester.makepyfile(dj_settings=settings, **files)


@pytest.mark.parametrize(
    ("mode", "n", "flag"),
    [
        ("schema", "0", "--reuse-db"),
        ("schema", "2", "--create-db"),
        ("database", "0", "--create-db"),
        ("database", "2", "--reuse-db"),
    ],
)
def test_djangos_test_database_is_the_workers_namespace_with_its_record(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, n: str, mode: str, flag: str
) -> None:
    prefix = f"{PREFIX}{mode[0]}{n}"
    django_project(pytester, monkeypatch, prefix, mode=mode, test_django=TEST)
    result = pytester.runpytest_subprocess("-n", n, "-p", "no:randomly", "-s", flag)
    result.assert_outcomes(passed=2)
    seen = [line.split()[1:] for line in result.stdout.lines if line.startswith("WORKER ")]
    for name, django_name, owner, run in seen:
        assert name.startswith(f"{prefix}_"), "Django uses the worker's namespace"
        assert owner == name, "it carries worker_utils' ownership record"
        assert run.replace("-", "_")[:10] in name, "its name carries the run id"
        assert django_name == (name if mode == "database" else URL.rpartition("/")[2])
    assert schemas(prefix) == []
    assert databases(prefix) == [], f"{flag} keeps nothing: no database per run is left"


SESSION_ROWS = """
import pytest
from django.contrib.auth.models import Group


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker):
    # pytest-django's "populate the test database" pattern.
    with django_db_blocker.unblock():
        Group.objects.create(name="staff")


@pytest.mark.django_db
@pytest.mark.parametrize("n", range(3))
def test_the_session_rows_stay_and_the_tests_go(n):
    assert list(Group.objects.values_list("name", flat=True)) == ["staff"]
    Group.objects.create(name=f"test {n}")
"""


@pytest.mark.parametrize("mode", ["schema", "database"])
def test_rows_a_django_db_setup_override_stores_stay_for_every_test(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    prefix = f"{PREFIX}s{mode[0]}"
    django_project(pytester, monkeypatch, prefix, mode=mode, test_session_rows=SESSION_ROWS)
    result = pytester.runpytest_subprocess("-n", "2", "-p", "no:randomly")
    result.assert_outcomes(passed=3)
    assert schemas(prefix) == []
    assert databases(prefix) == []


SHOP_MODELS = """
from django.db import models


class Item(models.Model):
    name = models.CharField(max_length=20)
"""
SHOP_MIGRATION = """
from django.db import migrations, models


def refuse(apps, schema_editor):
    raise RuntimeError("this migration must not run under --nomigrations")


class Migration(migrations.Migration):
    initial = True
    dependencies = []
    operations = [
        migrations.CreateModel(
            "Item",
            [("id", models.AutoField(primary_key=True)), ("name", models.CharField(max_length=20))],
        ),
        migrations.RunPython(refuse),
    ]
"""
NO_MIGRATIONS_TEST = """
import pytest
from shop.models import Item


@pytest.mark.django_db
def test_the_tables_come_from_the_models():
    Item.objects.create(name="no migrations")
    assert Item.objects.count() == 1
"""


def test_nomigrations_makes_the_template_from_the_models_without_running_migrations(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    prefix = f"{PREFIX}nm"
    settings = SETTINGS.replace('"django.contrib.auth"]', '"django.contrib.auth", "shop"]')
    django_project(pytester, monkeypatch, prefix, settings=settings, test_shop=NO_MIGRATIONS_TEST)
    shop = pytester.mkpydir("shop")
    (shop / "models.py").write_text(SHOP_MODELS)
    (shop / "migrations").mkdir()
    (shop / "migrations" / "__init__.py").write_text("")
    (shop / "migrations" / "0001_initial.py").write_text(SHOP_MIGRATION)
    with_migrations = pytester.runpytest_subprocess("-n", "0", "-p", "no:randomly")
    with_migrations.assert_outcomes(errors=1)  # the migration ran, and refused
    result = pytester.runpytest_subprocess("-n", "2", "-p", "no:randomly", "--nomigrations")
    result.assert_outcomes(passed=1)
    assert schemas(prefix) == []


OWN_TEST_NAME = """
import pytest


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix):
    # A project's own test database name, as pytest-django's docs show for tox.
    from django.conf import settings

    db = settings.DATABASES["default"]
    db["TEST"]["NAME"] = f"test_{db['NAME']}_own"
"""


OWN_NAME_TEST = """
import pytest
from django.contrib.auth.models import User
from django.db import connection


@pytest.mark.django_db
@pytest.mark.parametrize("n", range(2))
def test_django(n):
    User.objects.create_user(f"user{n}")
    assert User.objects.count() == 1
    assert connection.settings_dict["NAME"].endswith("_own")  # the conftest's, not the worker's
"""


def test_a_conftest_that_takes_over_the_test_database_name_is_warned_and_leaves_nothing(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    prefix = f"{PREFIX}ow"
    django_project(pytester, monkeypatch, prefix, mode="database", test_django=OWN_NAME_TEST)
    pytester.makeconftest(OWN_TEST_NAME)
    result = pytester.runpytest_subprocess("-n", "2", "-p", "no:randomly")
    result.assert_outcomes(passed=2, warnings=2)
    result.stdout.fnmatch_lines(
        [
            "*WorkerUtilsPostgresWarning: worker_utils: the Django test database of default is "
            "not this worker's: a conftest.py overrides django_db_modify_db_settings without *"
        ]
    )
    assert databases(prefix) == [], "pytest-django dropped its own test databases"
