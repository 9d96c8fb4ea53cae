"""Per-conversation exclusivity and fencing: one lock session per worker, against real Postgres."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from jobs.database import POOL_WAIT_SECONDS, DatabaseBusy
from jobs.lock import FenceLost, LockUnavailable, can_take_turns
from tests.fixtures.locks import TurnLocks, open_turn_locks
from tests.fixtures.webhook import Channel, MakeChannel


@pytest.fixture
async def locks(database_url: str) -> AsyncIterator[TurnLocks]:
    async with open_turn_locks(database_url) as locks:
        yield locks


@pytest.fixture
async def other_worker(database_url: str) -> AsyncIterator[TurnLocks]:
    async with open_turn_locks(database_url) as locks:
        yield locks


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


async def _lock_holders(db: asyncpg.Pool, convs: list[uuid.UUID]) -> list[int]:
    """The backends holding these conversations' advisory locks."""
    pids: list[int] = [
        r["pid"]
        for r in await db.fetch(
            "select pid from pg_locks where locktype = 'advisory' and granted"
            " and (classid::bigint << 32 | objid::bigint)"
            " = any(select private.conversation_lock_key(c) from unnest($1::uuid[]) c)",
            convs,
        )
    ]
    return pids


async def test_a_second_holder_is_refused_whether_another_worker_or_another_job_of_this_one(
    locks: TurnLocks, other_worker: TurnLocks, db: asyncpg.Pool, make_channel: MakeChannel
) -> None:
    conv = await _conversation(db, await make_channel())
    first = await locks.take(conv, "w1")
    assert first is not None
    assert await other_worker.take(conv, "w2") is None
    # The same session could take its own advisory lock again: the session refuses it itself.
    assert await locks.take(conv, "w1") is None
    assert await first.release() is True  # its message is still unprocessed
    second = await other_worker.take(conv, "w2")
    assert second is not None
    assert second.epoch == first.epoch + 1
    await second.release()


async def test_one_session_holds_many_conversations_and_their_statements_share_a_small_pool(
    locks: TurnLocks, db: asyncpg.Pool, make_channel: MakeChannel
) -> None:
    channel = await make_channel()
    convs = [await _conversation(db, channel) for _ in range(30)]
    taken = await asyncio.gather(*(locks.take(conv) for conv in convs))
    assert all(lock is not None for lock in taken)
    held = [lock for lock in taken if lock is not None]
    try:
        assert len(set(await _lock_holders(db, convs))) == 1  # one backend holds all 30
        assert locks.session.held == 30
        # Every turn's fenced statements at once, through the pool's two connections.
        await asyncio.gather(*(lock.assert_fence() for lock in held))
    finally:
        await asyncio.gather(*(lock.release() for lock in held))
    assert await _lock_holders(db, convs) == []
    assert locks.session.held == 0


async def test_a_turn_whose_lock_session_died_stops_and_an_old_epoch_is_refused(
    locks: TurnLocks, other_worker: TurnLocks, db: asyncpg.Pool, make_channel: MakeChannel
) -> None:
    conv = await _conversation(db, await make_channel())
    zombie = await locks.take(conv, "zombie")
    assert zombie is not None
    await zombie.assert_fence()  # still the owner

    # The session ends (network drop, database restart): Postgres frees every lock it held, and
    # the worker knows at once.
    await db.execute("select pg_terminate_backend($1)", await locks.session_pid())
    for _ in range(100):
        if zombie.lost:
            break
        await asyncio.sleep(0.02)
    with pytest.raises(FenceLost) as lost:
        await zombie.assert_fence()
    assert lost.value.session_lost

    winner = await other_worker.take(conv, "winner")
    assert winner is not None
    # Even through a live connection, the old epoch is refused by the database.
    with pytest.raises(asyncpg.PostgresError, match="turn fence lost"):
        await db.execute("select private.assert_turn_fence($1, $2)", conv, zombie.epoch)
    # Its unlock cannot run: whether work waits is unknown, so the caller looks again.
    assert await zombie.release() is True
    await winner.release()

    # The worker's next take opens a new session.
    again = await locks.take(conv, "w1")
    assert again is not None
    await again.assert_fence()
    await again.release()


async def test_a_conversation_without_work_is_not_locked(
    locks: TurnLocks, db: asyncpg.Pool, make_channel: MakeChannel
) -> None:
    channel = await make_channel()
    conv = await _conversation(db, channel, inbound=False)
    assert await locks.take(conv) is None
    assert await _lock_holders(db, [conv]) == []
    assert (
        await db.fetchval(
            "select epoch from public.conversation_turn_fences where conversation_id = $1", conv
        )
        is None
    )
    # An outbox row left pending by a worker that died is work: the turn resumes it.
    await _message(db, channel, conv, "outbound", "pending")
    lock = await locks.take(conv)
    assert lock is not None
    await lock.release()


async def test_unlocking_says_whether_a_message_arrived_meanwhile(
    locks: TurnLocks, other_worker: TurnLocks, db: asyncpg.Pool, make_channel: MakeChannel
) -> None:
    channel = await make_channel()
    conv = await _conversation(db, channel)
    lock = await locks.take(conv)
    assert lock is not None
    await db.execute(
        "update public.messages set processed_by_agent = true where conversation_id = $1", conv
    )
    assert await lock.release() is False
    assert await locks.take(conv) is None  # nothing left to do
    await _message(db, channel, conv, "inbound")
    lock = await locks.take(conv)
    assert lock is not None
    await _message(db, channel, conv, "inbound")  # its job finds the lock busy
    assert await other_worker.take(conv, "w2") is None
    assert await lock.release() is True
    again = await other_worker.take(conv, "w2")
    assert again is not None
    await again.release()


async def test_a_stuck_lock_session_fails_the_take_in_time_and_gives_the_lock_back_later(
    locks: TurnLocks, db: asyncpg.Pool, make_channel: MakeChannel, database_url: str
) -> None:
    conv = await _conversation(db, await make_channel())
    blocker = await asyncpg.connect(database_url)
    try:
        # The lock statement reads the conversation's messages: a table lock makes it wait.
        tx = blocker.transaction()
        await tx.start()
        await blocker.execute("lock table public.messages in access exclusive mode")
        started = time.monotonic()
        with pytest.raises(LockUnavailable):
            await locks.session.lock(conv, within=0.3)
        assert time.monotonic() - started < 2
        assert not await can_take_turns(locks.session, locks.db, 0.2)
        await tx.rollback()
    finally:
        await blocker.close()
    # The statement ran once the table was free and took the lock for an asker that had gone:
    # the session gave it back at once.
    assert await can_take_turns(locks.session, locks.db, 5)
    assert await _lock_holders(db, [conv]) == []
    lock = await locks.take(conv)
    assert lock is not None
    await lock.release()


async def test_a_starved_statement_pool_fails_the_take_in_time_and_frees_the_lock(
    db: asyncpg.Pool, make_channel: MakeChannel, database_url: str
) -> None:
    conv = await _conversation(db, await make_channel())
    async with open_turn_locks(database_url, pool_size=1) as locks:
        held = await locks.db.acquire()  # the pool's only connection is taken (leaked, stuck)
        try:
            assert not await can_take_turns(locks.session, locks.db, 0.2)
            started = time.monotonic()
            with pytest.raises(DatabaseBusy):
                await locks.take(conv)
            assert time.monotonic() - started < POOL_WAIT_SECONDS + 2
            assert await _lock_holders(db, [conv]) == []  # the lock went back
        finally:
            await locks.db.release(held)
        assert await can_take_turns(locks.session, locks.db, 2)
        lock = await locks.take(conv)
        assert lock is not None
        await lock.release()
