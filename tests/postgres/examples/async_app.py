"""The async twin, driven by asyncio.run so that no async plugin is needed."""

import asyncio

import pytest


@pytest.fixture(scope="session")
def worker_postgres_setup():
    def setup(conn):
        conn.execute("CREATE TABLE note (id int PRIMARY KEY, body text)")

    return setup


def test_a_commit_through_the_async_connection_is_cleaned_up_after_the_test(
    worker_postgres_async,
):
    async def main():
        async with worker_postgres_async() as conn:
            await conn.execute("INSERT INTO note VALUES (1, 'committed')")
            await conn.commit()

    asyncio.run(main())


@pytest.mark.parametrize("n", range(4))
def test_each_block_sees_only_its_own_rows(worker_postgres_async, n):
    async def main():
        async with worker_postgres_async() as conn:
            async with conn.transaction():  # the code under test's: a savepoint
                await conn.execute("INSERT INTO note VALUES (1, 'mine')")
            cursor = await conn.execute("SELECT count(*) FROM note")
            assert await cursor.fetchone() == (1,)

    asyncio.run(main())
