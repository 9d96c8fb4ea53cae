"""The turn's first call (`private.begin_turn`): lock, snapshot and, only when the turn can
start at once, the contact and session, against real Postgres."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from jobs import turn_store
from tests.fixtures.worker import TurnStack, Workspace, make_workspace


@pytest.fixture
async def lock_pool(turn_stack: TurnStack) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(turn_stack.database_url, min_size=1, max_size=3)
    assert pool is not None
    yield pool
    await pool.close()


async def _conversation(db: asyncpg.Pool, ws: Workspace, *, inbound: int = 1) -> uuid.UUID:
    conv: uuid.UUID = await db.fetchval(
        "insert into public.conversations (workspace_id, phone_number_id, phone, profile_name)"
        " values ($1, $2, $3, 'Luz') returning id",
        ws.id,
        ws.phone_number_id,
        f"57{uuid.uuid4().int % 10**10:010d}",
    )
    for i in range(inbound):
        await _message(db, ws, conv, "inbound", body=f"hola {i}")
    return conv


async def _message(
    db: asyncpg.Pool,
    ws: Workspace,
    conv: uuid.UUID,
    direction: str,
    *,
    body: str = "hola",
    status: str | None = None,
) -> None:
    await db.execute(
        "insert into public.messages (workspace_id, conversation_id, wamid, direction, type,"
        " content, status, processed_by_agent)"
        " values ($1, $2, $3, $4, 'text', jsonb_build_object('body', $5::text), $6, $4 = 'outbound')",
        ws.id,
        conv,
        f"wamid.BEGIN{uuid.uuid4().hex}",
        direction,
        body,
        status,
    )


async def _sessions(db: asyncpg.Pool, conv: uuid.UUID) -> int:
    count: int = await db.fetchval(
        "select count(*) from public.agent_sessions where conversation_id = $1", conv
    )
    return count


async def test_a_turn_that_can_start_is_taken_and_prepared_in_one_call(
    turn_db: asyncpg.Pool, lock_pool: asyncpg.Pool
) -> None:
    ws = await make_workspace(turn_db)
    conv = await _conversation(turn_db, ws, inbound=2)
    begun = await turn_store.begin(lock_pool, conv, "w1", prepare=True)
    assert begun is not None
    try:
        assert begun.snapshot is not None
        assert [m.text for m in begun.snapshot.messages] == ["hola 0", "hola 1"]
        assert begun.prepared is not None
        contact, session = begun.prepared
        assert contact.name == "Luz"
        assert (session.agent_id, session.is_new, session.version) == ("diagnostic-v1", True, 1)
        # The same contact and session as the separate call finds, and only one of each.
        again_contact, again_session = await turn_store.prepare(begun.lock, "diagnostic-v1")
        assert (again_contact.id, again_session.id) == (contact.id, session.id)
        assert again_session.is_new is False
        assert await _sessions(turn_db, conv) == 1
        linked = await turn_db.fetchval(
            "select contact_id from public.conversations where id = $1", conv
        )
        assert linked == contact.id
        # While it is held, another worker gets nothing.
        assert await turn_store.begin(lock_pool, conv, "w2", prepare=True) is None
    finally:
        await begun.lock.release()


@pytest.mark.parametrize(
    "situation", ["agent off", "outbox to resume", "reply window open", "handing off"]
)
async def test_a_turn_that_cannot_start_at_once_is_taken_but_not_prepared(
    turn_db: asyncpg.Pool, lock_pool: asyncpg.Pool, situation: str
) -> None:
    ws = await make_workspace(
        turn_db,
        enabled=situation != "agent off",
        reply_window_ms=60_000 if situation == "reply window open" else 0,
    )
    conv = await _conversation(turn_db, ws)
    if situation == "outbox to resume":
        await _message(turn_db, ws, conv, "outbound", status="pending")
    begun = await turn_store.begin(lock_pool, conv, "w1", prepare=situation != "handing off")
    assert begun is not None
    try:
        assert begun.snapshot is not None
        assert len(begun.snapshot.messages) == 1
        assert begun.prepared is None
        assert await _sessions(turn_db, conv) == 0
        assert (
            await turn_db.fetchval(
                "select contact_id from public.conversations where id = $1", conv
            )
            is None
        )
    finally:
        await begun.lock.release()


async def test_a_conversation_without_work_is_not_taken(
    turn_db: asyncpg.Pool, lock_pool: asyncpg.Pool
) -> None:
    ws = await make_workspace(turn_db)
    conv = await _conversation(turn_db, ws, inbound=0)
    assert await turn_store.begin(lock_pool, conv, "w1", prepare=True) is None
    assert await turn_store.begin(lock_pool, uuid.uuid4(), "w1", prepare=True) is None
    assert (
        await turn_db.fetchval(
            "select count(*) from public.conversation_turn_fences where conversation_id = $1", conv
        )
        == 0
    )
