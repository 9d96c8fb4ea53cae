"""Per-conversation exclusivity and fencing, against real Postgres connections."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from jobs.lock import ConversationLock, FenceLost
from tests.fixtures.webhook import Channel, MakeChannel


@pytest.fixture
async def lock_pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=4)
    assert pool is not None
    yield pool
    await pool.close()


async def _conversation(db: asyncpg.Pool, channel: Channel) -> uuid.UUID:
    conv: uuid.UUID = await db.fetchval(
        "insert into public.conversations (workspace_id, phone_number_id, phone)"
        " values ($1, $2, $3) returning id",
        channel.workspace_id,
        channel.phone_number_id,
        f"57{uuid.uuid4().int % 10**10:010d}",
    )
    return conv


async def test_second_holder_is_refused_while_the_first_holds_the_lock(
    lock_pool: asyncpg.Pool, db: asyncpg.Pool, make_channel: MakeChannel
) -> None:
    conv = await _conversation(db, await make_channel())
    first = await ConversationLock.try_acquire(lock_pool, conv, "w1")
    assert first is not None
    assert await ConversationLock.try_acquire(lock_pool, conv, "w2") is None
    await first.release()
    second = await ConversationLock.try_acquire(lock_pool, conv, "w2")
    assert second is not None
    assert second.epoch == first.epoch + 1
    await second.release()


async def test_a_holder_whose_connection_died_is_fenced_off(
    lock_pool: asyncpg.Pool, db: asyncpg.Pool, make_channel: MakeChannel, database_url: str
) -> None:
    conv = await _conversation(db, await make_channel())
    zombie = await ConversationLock.try_acquire(lock_pool, conv, "zombie")
    assert zombie is not None
    await zombie.assert_fence()  # still the owner

    # The zombie's session ends (network drop, pooler restart): Postgres frees its lock.
    pid = await zombie.conn.fetchval("select pg_backend_pid()")
    await db.execute("select pg_terminate_backend($1)", pid)
    other_pool = await asyncpg.create_pool(database_url, min_size=1, max_size=1)
    assert other_pool is not None
    try:
        winner = await ConversationLock.try_acquire(other_pool, conv, "winner")
        assert winner is not None
        with pytest.raises(FenceLost):
            await zombie.assert_fence()
        # Even with a live connection, an old epoch is refused by the database.
        with pytest.raises(asyncpg.PostgresError, match="turn fence lost"):
            await db.execute("select private.assert_turn_fence($1, $2)", conv, zombie.epoch)
        await winner.release()
    finally:
        await other_pool.close()
        await zombie.release()
