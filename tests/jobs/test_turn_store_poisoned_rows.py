"""A turn taken on rows a tenant poisoned still reads them, and whatever happens after the lock is
taken, the lock and its connection go back: against real Postgres, with a lock pool of ONE
connection, so a single leak would starve every later turn."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from jobs import turn_store
from tests.fixtures.locks import TurnLocks, open_turn_locks
from tests.fixtures.worker import TurnStack, Workspace, make_workspace
from tests.jobs.poison import POISONS, Poison, poisoned_conversation


@pytest.fixture
async def one_connection(turn_stack: TurnStack) -> AsyncIterator[TurnLocks]:
    """A statement pool of one connection: a connection not given back starves the next take."""
    async with open_turn_locks(turn_stack.database_url, pool_size=1) as locks:
        yield locks


async def _lock_is_free(db: asyncpg.Pool, conv: uuid.UUID) -> bool:
    return not await db.fetchval(
        "select exists (select 1 from pg_locks where locktype = 'advisory'"
        " and (classid::bigint << 32 | objid::bigint) = private.conversation_lock_key($1))",
        conv,
    )


@pytest.mark.parametrize("poison", POISONS, ids=[p.name for p in POISONS])
async def test_a_poisoned_row_is_read_and_the_lock_comes_back(
    poison: Poison, turn_db: asyncpg.Pool, one_connection: TurnLocks
) -> None:
    ws = await make_workspace(turn_db)
    conv = await poisoned_conversation(turn_db, ws, poison)
    taken = await one_connection.begin(conv, "w1")
    assert taken is not None
    lock, verdict = taken
    try:
        assert verdict.kind == "run"
        assert len(verdict.messages) == poison.copies
        now = datetime.now(UTC)
        for message in verdict.messages:
            assert datetime(2000, 1, 1, tzinfo=UTC) <= message.timestamp <= now + timedelta(1)
            assert message.text is None or len(message.text) <= turn_store.MAX_TEXT_CHARS
            assert isinstance(message.content, dict)
    finally:
        await lock.release()
    # The pool's only connection is back and the conversation can be taken again.
    again = await one_connection.begin(conv, "w2")
    assert again is not None
    await again[0].release()


async def test_a_row_the_database_cannot_compute_with_frees_the_lock_and_the_connection(
    turn_db: asyncpg.Pool, one_connection: TurnLocks
) -> None:
    ws = await make_workspace(turn_db)
    conv = await poisoned_conversation(turn_db, ws, POISONS[0])
    # An infinite creation time makes the reply window's arithmetic (`private.turn_snapshot`)
    # fail inside the database, after the lock was taken in the same call.
    await turn_db.execute(
        "update public.messages set created_at = '-infinity' where conversation_id = $1", conv
    )
    try:
        taken = await one_connection.begin(conv, "w1")
    except asyncpg.PostgresError:
        taken = None
    if taken is not None:  # the database reads such rows defensively
        await taken[0].release()
    assert await _lock_is_free(turn_db, conv)
    healthy = await _conversation_with_work(turn_db, ws)
    taken = await one_connection.begin(healthy, "w1")
    assert taken is not None
    await taken[0].release()


async def _conversation_with_work(db: asyncpg.Pool, ws: Workspace) -> uuid.UUID:
    return await poisoned_conversation(db, ws, Poison("healthy"))


@pytest.mark.parametrize(
    ("stored", "expected"),
    [
        ("2026-11-30T10:00:00+00:00", datetime(2026, 11, 30, 10, tzinfo=UTC)),
        ("1200-02-15T14:13:21+00:00 BC", None),
        ("infinity", None),
        ("-infinity", None),
        ("294276-01-01T00:00:00+00:00", None),
        ("1999-12-31T23:59:59+00:00", None),
        ("2026-12-05T00:00:00+00:00", None),  # more than a day ahead of `now`
        ("2026-11-30T10:00:00", None),  # no zone: not what Postgres writes
        (None, None),
        (1764496800, None),
    ],
)
def test_stored_times_python_cannot_hold_or_believe_read_as_now(
    stored: object, expected: datetime | None
) -> None:
    now = datetime(2026, 12, 3, 7, 0, tzinfo=UTC)
    assert turn_store.message_time(stored, now=now) == (expected or now)
