"""The turn's first call (`private.begin_turn`): lock, fence and the verdict, with the contact
and session only when the turn can start at once, against real Postgres."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from jobs import turn_store
from tests.fixtures.locks import TurnLocks, open_turn_locks
from tests.fixtures.worker import TurnStack, Workspace, make_workspace


@pytest.fixture
async def locks(turn_stack: TurnStack) -> AsyncIterator[TurnLocks]:
    async with open_turn_locks(turn_stack.database_url) as locks:
        yield locks


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
    turn_db: asyncpg.Pool, locks: TurnLocks
) -> None:
    ws = await make_workspace(turn_db)
    conv = await _conversation(turn_db, ws, inbound=2)
    taken = await locks.begin(conv, "w1")
    assert taken is not None
    lock, verdict = taken
    try:
        assert verdict.kind == "run"
        assert [m.text for m in verdict.messages] == ["hola 0", "hola 1"]
        assert verdict.contact is not None
        assert verdict.session is not None
        assert verdict.contact.name == "Luz"
        session = verdict.session
        assert (session.agent_id, session.is_new, session.version) == ("diagnostic-v1", True, 1)
        # Asked again, the same contact and session, and only one of each.
        again = await turn_store.verdict(lock)
        assert again.kind == "run"
        assert again.contact is not None
        assert again.session is not None
        assert (again.contact.id, again.session.id) == (verdict.contact.id, session.id)
        assert again.session.is_new is False
        assert await _sessions(turn_db, conv) == 1
        linked = await turn_db.fetchval(
            "select contact_id from public.conversations where id = $1", conv
        )
        assert linked == verdict.contact.id
        # While it is held, another worker gets nothing.
        assert await locks.begin(conv, "w2") is None
    finally:
        await lock.release()


@pytest.mark.parametrize(
    ("situation", "kind"),
    [
        ("agent off", "off"),
        ("outbox to resume", "resume"),
        ("reply window open", "wait"),
        ("handing off", "handoff"),
    ],
)
async def test_a_turn_that_cannot_start_at_once_is_taken_but_not_prepared(
    turn_db: asyncpg.Pool, locks: TurnLocks, situation: str, kind: str
) -> None:
    ws = await make_workspace(
        turn_db,
        enabled=situation != "agent off",
        reply_window_ms=60_000 if situation == "reply window open" else 0,
    )
    conv = await _conversation(turn_db, ws)
    if situation == "outbox to resume":
        await _message(turn_db, ws, conv, "outbound", status="pending")
    taken = await locks.begin(conv, "w1", handing_off=situation == "handing off")
    assert taken is not None
    lock, verdict = taken
    try:
        assert verdict.kind == kind
        assert len(verdict.messages) == 1
        assert verdict.contact is None
        assert verdict.session is None
        if kind == "wait":
            assert 0 < verdict.wait_ms <= 60_000
        assert await _sessions(turn_db, conv) == 0
        assert (
            await turn_db.fetchval(
                "select contact_id from public.conversations where id = $1", conv
            )
            is None
        )
    finally:
        await lock.release()


async def test_a_conversation_without_work_is_not_taken(
    turn_db: asyncpg.Pool, locks: TurnLocks
) -> None:
    ws = await make_workspace(turn_db)
    conv = await _conversation(turn_db, ws, inbound=0)
    assert await locks.begin(conv, "w1") is None
    assert await locks.begin(uuid.uuid4(), "w1") is None
    assert (
        await turn_db.fetchval(
            "select count(*) from public.conversation_turn_fences where conversation_id = $1", conv
        )
        == 0
    )


async def test_a_flood_makes_turns_of_the_oldest_fifty_with_texts_cut_to_whatsapps_limit(
    turn_db: asyncpg.Pool, locks: TurnLocks
) -> None:
    ws = await make_workspace(turn_db)
    conv = await _conversation(turn_db, ws, inbound=0)
    await _message(turn_db, ws, conv, "inbound", body="x" * 100_000)
    for i in range(1, 60):
        await _message(turn_db, ws, conv, "inbound", body=f"hola {i}")
    # An arrival time no clock can reach does not break the reply window's arithmetic.
    await turn_db.execute(
        "update public.messages set created_at = 'infinity'"
        " where conversation_id = $1 and content ->> 'body' = 'hola 59'",
        conv,
    )
    taken = await locks.begin(conv, "w1")
    assert taken is not None
    lock, verdict = taken
    await lock.release()
    assert verdict.kind == "run"
    texts = [m.text for m in verdict.messages]
    assert len(texts) == 50
    assert texts[0] == "x" * 4096
    assert texts[1:] == [f"hola {i}" for i in range(1, 50)]
