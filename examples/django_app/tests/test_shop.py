import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.db import IntegrityError, connection
from shop.models import Product


@pytest.mark.django_db
@pytest.mark.parametrize("n", range(2))
def test_each_test_starts_from_the_migrated_database(n):
    assert Product.objects.count() == 0
    Product.objects.create(slug=f"p{n}", name="Pen")
    User.objects.create_user(f"user{n}")
    assert Product.objects.count() == 1


@pytest.mark.django_db
def test_the_unique_constraint_holds():
    Product.objects.create(slug="pen", name="Pen")
    with pytest.raises(IntegrityError):
        Product.objects.create(slug="pen", name="Other pen")


@pytest.mark.django_db
def test_django_uses_this_workers_own_database(worker_postgres_namespace):
    assert settings.DATABASES["default"]["NAME"] == worker_postgres_namespace.database
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_database()")
        assert cursor.fetchone()[0] == worker_postgres_namespace.database
