"""Per-conversation exclusivity and fencing, against real Postgres connections."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from jobs.lock import ConversationLock, FenceLost, LockPoolExhausted, pool_can_lock
from tests.fixtures.webhook import Channel, MakeChannel


@pytest.fixture
async def lock_pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=4)
    assert pool is not None
    yield pool
    await pool.close()


async def _take(pool: asyncpg.Pool, conv: uuid.UUID, holder: str) -> ConversationLock | None:
    """The lock as a turn takes it, without preparing anything (a handoff's verdict)."""
    taken = await ConversationLock.take(pool, conv, holder, handing_off=True)
    return None if taken is None else taken[0]


async def _conversation(db: asyncpg.Pool, channel: Channel, *, inbound: bool = True) -> uuid.UUID:
    """A conversation, with one unprocessed inbound message (work for a turn) unless told not."""
    conv: uuid.UUID = await db.fetchval(
        "insert into public.conversations (workspace_id, phone_number_id, phone)"
        " values ($1, $2, $3) returning id",
        channel.workspace_id,
        channel.phone_number_id,
        f"57{uuid.uuid4().int % 10**10:010d}",
    )
    if inbound:
        await _message(db, channel, conv, "inbound")
    return conv


async def _message(
    db: asyncpg.Pool, channel: Channel, conv: uuid.UUID, direction: str, status: str | None = None
) -> uuid.UUID:
    message_id: uuid.UUID = await db.fetchval(
        "insert into public.messages (workspace_id, conversation_id, wamid, direction, type,"
        " content, status, processed_by_agent)"
        " values ($1, $2, $3, $4, 'text', '{\"body\": \"hola\"}', $5, $4 = 'outbound')"
        " returning id",
        channel.workspace_id,
        conv,
        f"wamid.LOCK{uuid.uuid4().hex}",
        direction,
        status,
    )
    return message_id


async def test_second_holder_is_refused_while_the_first_holds_the_lock(
    lock_pool: asyncpg.Pool, db: asyncpg.Pool, make_channel: MakeChannel
) -> None:
    conv = await _conversation(db, await make_channel())
    first = await _take(lock_pool, conv, "w1")
    assert first is not None
    assert await _take(lock_pool, conv, "w2") is None
    await first.release()
    second = await _take(lock_pool, conv, "w2")
    assert second is not None
    assert second.epoch == first.epoch + 1
    await second.release()


async def test_a_holder_whose_connection_died_is_fenced_off(
    lock_pool: asyncpg.Pool, db: asyncpg.Pool, make_channel: MakeChannel, database_url: str
) -> None:
    conv = await _conversation(db, await make_channel())
    zombie = await _take(lock_pool, conv, "zombie")
    assert zombie is not None
    await zombie.assert_fence()  # still the owner

    # The zombie's session ends (network drop, pooler restart): Postgres frees its lock.
    pid = await zombie.conn.fetchval("select pg_backend_pid()")
    await db.execute("select pg_terminate_backend($1)", pid)
    other_pool = await asyncpg.create_pool(database_url, min_size=1, max_size=1)
    assert other_pool is not None
    try:
        winner = await _take(other_pool, conv, "winner")
        assert winner is not None
        with pytest.raises(FenceLost):
            await zombie.assert_fence()
        # Even with a live connection, an old epoch is refused by the database.
        with pytest.raises(asyncpg.PostgresError, match="turn fence lost"):
            await db.execute("select private.assert_turn_fence($1, $2)", conv, zombie.epoch)
        await winner.release()
        # Its unlock cannot run: unknown whether messages wait, so the caller looks again.
        assert await zombie.release() is True
        zombie = None
    finally:
        await other_pool.close()
        if zombie is not None:
            await zombie.release()


async def test_a_conversation_without_work_is_not_locked(
    lock_pool: asyncpg.Pool, db: asyncpg.Pool, make_channel: MakeChannel
) -> None:
    channel = await make_channel()
    conv = await _conversation(db, channel, inbound=False)
    assert await _take(lock_pool, conv, "w1") is None
    assert (
        await db.fetchval(
            "select epoch from public.conversation_turn_fences where conversation_id = $1", conv
        )
        is None
    )
    # An outbox row left pending by a worker that died is work: the turn resumes it.
    await _message(db, channel, conv, "outbound", "pending")
    lock = await _take(lock_pool, conv, "w1")
    assert lock is not None
    await lock.release()


async def test_unlocking_says_whether_a_message_arrived_meanwhile(
    lock_pool: asyncpg.Pool, db: asyncpg.Pool, make_channel: MakeChannel
) -> None:
    channel = await make_channel()
    conv = await _conversation(db, channel)
    lock = await _take(lock_pool, conv, "w1")
    assert lock is not None
    await db.execute(
        "update public.messages set processed_by_agent = true where conversation_id = $1", conv
    )
    assert await lock.release() is False
    lock = await _take(lock_pool, conv, "w1")
    assert lock is None  # nothing left to do
    await _message(db, channel, conv, "inbound")
    lock = await _take(lock_pool, conv, "w1")
    assert lock is not None
    await _message(db, channel, conv, "inbound")  # its job finds the lock busy
    assert await _take(lock_pool, conv, "w2") is None
    assert await lock.release() is True
    # The lock is free again (released on the connection that took it).
    again = await _take(lock_pool, conv, "w2")
    assert again is not None
    await again.release()


async def test_a_starved_lock_pool_fails_the_take_in_time_instead_of_hanging(
    db: asyncpg.Pool, make_channel: MakeChannel, database_url: str
) -> None:
    conv = await _conversation(db, await make_channel())
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=1)
    assert pool is not None
    try:
        held = await pool.acquire()  # every lock connection is taken (leaked, stuck)
        try:
            assert not await pool_can_lock(pool, 0.2)
            started = time.monotonic()
            with pytest.raises(LockPoolExhausted):
                await asyncio.wait_for(
                    ConversationLock.take(pool, conv, "w1", handing_off=True, acquire_timeout=0.3),
                    10,
                )
            assert time.monotonic() - started < 2
        finally:
            await pool.release(held)
        assert await pool_can_lock(pool, 2)
        lock = await _take(pool, conv, "w1")
        assert lock is not None
        await lock.release()
    finally:
        await pool.close()
