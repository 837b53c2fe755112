"""The SQLAlchemy recipe of docs/postgres.md: the rows a test commits are gone after it."""

import pytest
from sqlalchemy import text


@pytest.mark.parametrize("n", range(4))
def test_each_test_starts_without_the_rows_the_last_one_committed(session, n):
    assert session.execute(text("SELECT count(*) FROM account")).scalar() == 0
    session.execute(text("INSERT INTO account VALUES (1, 'ann')"))
    session.commit()
