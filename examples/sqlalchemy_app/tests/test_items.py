import pytest
from models import add_item
from sqlalchemy.exc import IntegrityError


@pytest.mark.parametrize("name", ["pen", "ink", "pad"])
def test_each_test_starts_from_the_migrated_tables(session, name):
    assert add_item(session, name) == 1


def test_alembics_constraint_names_are_kept(session):
    add_item(session, "pen")
    with pytest.raises(IntegrityError, match="uq_item_name"):
        add_item(session, "pen")
