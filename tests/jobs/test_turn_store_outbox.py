"""The outbox's rules at the store, without a worker: sending order, the claim's skip rules, the
fence, recovery of interrupted sends and the record of an outcome, against real Postgres."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from jobs import turn_store
from jobs.lock import ConversationLock, FenceLost
from tests.fixtures.locks import TurnLocks, open_turn_locks
from tests.fixtures.worker import TurnStack, Workspace, make_workspace


@pytest.fixture
async def locks(turn_stack: TurnStack) -> AsyncIterator[TurnLocks]:
    async with open_turn_locks(turn_stack.database_url) as locks:
        yield locks


async def _conversation(db: asyncpg.Pool, ws: Workspace) -> uuid.UUID:
    conv: uuid.UUID = await db.fetchval(
        "insert into public.conversations (workspace_id, phone_number_id, phone)"
        " values ($1, $2, $3) returning id",
        ws.id,
        ws.phone_number_id,
        f"57{uuid.uuid4().int % 10**10:010d}",
    )
    return conv


async def _inbound(db: asyncpg.Pool, ws: Workspace, conv: uuid.UUID) -> None:
    await db.execute(
        "insert into public.messages (workspace_id, conversation_id, wamid, direction, type,"
        " content, processed_by_agent)"
        " values ($1, $2, $3, 'inbound', 'text', '{\"body\": \"hola\"}', false)",
        ws.id,
        conv,
        f"wamid.IN{uuid.uuid4().hex}",
    )


async def _outbox(
    db: asyncpg.Pool,
    ws: Workspace,
    conv: uuid.UUID,
    body: str,
    *,
    position: int,
    kind: str = "reply",
    status: str = "pending",
    created_at: str = "2026-12-01 10:00:00+00",
) -> uuid.UUID:
    row: uuid.UUID = await db.fetchval(
        "insert into public.messages (workspace_id, conversation_id, direction, type, content,"
        " status, processed_by_agent, sent_by_agent, outbox_kind, outbox_position, delay_ms,"
        " created_at)"
        " values ($1, $2, 'outbound', 'text', jsonb_build_object('body', $3::text), $4, true,"
        " true, $5, $6, 10 * $6, $7::text::timestamptz) returning id",
        ws.id,
        conv,
        body,
        status,
        kind,
        position,
        created_at,
    )
    return row


async def _take(locks: TurnLocks, conv: uuid.UUID) -> ConversationLock:
    taken = await locks.begin(conv)
    assert taken is not None, "the conversation has work, so the turn is taken"
    return taken[0]


async def _statuses(db: asyncpg.Pool, conv: uuid.UUID) -> dict[str, tuple[str, str | None]]:
    rows = await db.fetch(
        "select content ->> 'body' as body, status, skip_reason from public.messages"
        " where conversation_id = $1 and direction = 'outbound'",
        conv,
    )
    return {r["body"]: (r["status"], r["skip_reason"]) for r in rows}


async def test_pending_rows_go_out_in_turn_order_then_position(
    turn_db: asyncpg.Pool, locks: TurnLocks
) -> None:
    ws = await make_workspace(turn_db)
    conv = await _conversation(turn_db, ws)
    # Inserted out of order: a later turn's row first, then one turn's rows backwards.
    await _outbox(turn_db, ws, conv, "later turn", position=0, created_at="2026-12-01 10:00:05+00")
    await _outbox(turn_db, ws, conv, "third", position=2)
    await _outbox(turn_db, ws, conv, "first", position=0)
    await _outbox(turn_db, ws, conv, "second", position=1)
    await _outbox(turn_db, ws, conv, "already sent", position=3, status="sent")
    lock = await _take(locks, conv)
    try:
        rows = await turn_store.pending_outbox(lock)
    finally:
        await lock.release()
    assert [(r.body, r.kind, r.delay_ms) for r in rows] == [
        ("first", "reply", 0),
        ("second", "reply", 10),
        ("third", "reply", 20),
        ("later turn", "reply", 0),
    ]


async def test_a_claim_moves_the_row_to_sending_once(
    turn_db: asyncpg.Pool, locks: TurnLocks
) -> None:
    ws = await make_workspace(turn_db)
    conv = await _conversation(turn_db, ws)
    row = await _outbox(turn_db, ws, conv, "hola", position=0)
    lock = await _take(locks, conv)
    try:
        first = await turn_store.claim_outbox_message(lock, row)
        second = await turn_store.claim_outbox_message(lock, row)
    finally:
        await lock.release()
    assert (first.claimed, first.reason, first.skipped) == (True, None, 0)
    assert (second.claimed, second.reason) == (False, "gone")
    state = await turn_db.fetchrow(
        "select status, send_attempts from public.messages where id = $1", row
    )
    assert state is not None
    assert (state["status"], state["send_attempts"]) == ("sending", 1)


@pytest.mark.parametrize("cause", ["newer inbound message", "agent disabled"])
async def test_a_reply_that_must_not_go_out_skips_the_turns_replies_but_not_the_handoff(
    turn_db: asyncpg.Pool, locks: TurnLocks, cause: str
) -> None:
    ws = await make_workspace(turn_db)
    conv = await _conversation(turn_db, ws)
    first = await _outbox(turn_db, ws, conv, "first", position=0)
    await _outbox(turn_db, ws, conv, "second", position=1)
    handoff = await _outbox(turn_db, ws, conv, "handoff", position=2, kind="handoff")
    lock = await _take(locks, conv)
    try:
        if cause == "newer inbound message":
            await _inbound(turn_db, ws, conv)
        else:
            await turn_db.execute(
                "update public.conversations set agent_conversational = false where id = $1", conv
            )
        claim = await turn_store.claim_outbox_message(lock, first)
        handoff_claim = await turn_store.claim_outbox_message(lock, handoff)
    finally:
        await lock.release()
    assert (claim.claimed, claim.reason, claim.skipped) == (False, cause, 2)
    assert handoff_claim.claimed, "the handoff message goes out whatever the agent's state"
    assert await _statuses(turn_db, conv) == {
        "first": ("skipped", cause),
        "second": ("skipped", cause),
        "handoff": ("sending", None),
    }


async def test_a_lost_fence_refuses_claims_skips_and_recovery_but_not_the_record(
    turn_db: asyncpg.Pool, locks: TurnLocks
) -> None:
    ws = await make_workspace(turn_db)
    conv = await _conversation(turn_db, ws)
    row = await _outbox(turn_db, ws, conv, "hola", position=0)
    lock = await _take(locks, conv)
    try:
        assert (await turn_store.claim_outbox_message(lock, row)).claimed
        # Another worker took the conversation over (its claim bumped the epoch).
        await turn_db.execute(
            "update public.conversation_turn_fences set epoch = epoch + 1"
            " where conversation_id = $1",
            conv,
        )
        with pytest.raises(FenceLost):
            await turn_store.claim_outbox_message(lock, row)
        with pytest.raises(FenceLost):
            await turn_store.skip_outbox(lock, [row], "window closed")
        with pytest.raises(FenceLost):
            await turn_store.recover_interrupted(lock, 0)
        # What WhatsApp answered is a fact, whoever holds the turn now.
        await turn_store.record_send(lock, row, "sent", wamid=f"wamid.OUT{uuid.uuid4().hex}")
    finally:
        await lock.release()
    assert await _statuses(turn_db, conv) == {"hola": ("sent", None)}


async def test_interrupted_sends_become_unknown_and_are_never_pending_again(
    turn_db: asyncpg.Pool, locks: TurnLocks
) -> None:
    ws = await make_workspace(turn_db)
    conv = await _conversation(turn_db, ws)
    await _outbox(turn_db, ws, conv, "interrupted", position=0, status="sending")
    await _outbox(turn_db, ws, conv, "next", position=1)
    lock = await _take(locks, conv)
    try:
        assert await turn_store.recover_interrupted(lock, 15_000) == (1, 0)
        assert await turn_store.recover_interrupted(lock, 15_000) == (0, 0)
        assert [r.body for r in await turn_store.pending_outbox(lock)] == ["next"]
    finally:
        await lock.release()
    statuses = await _statuses(turn_db, conv)
    assert statuses["interrupted"] == ("unknown", "worker stopped during the send call")


async def test_a_row_claimed_moments_ago_may_still_be_in_flight_and_is_left_alone(
    turn_db: asyncpg.Pool, locks: TurnLocks
) -> None:
    ws = await make_workspace(turn_db)
    conv = await _conversation(turn_db, ws)
    row = await _outbox(turn_db, ws, conv, "in flight", position=0)
    lock = await _take(locks, conv)
    try:
        # Claimed by a worker that then lost its lock, its send still under way.
        assert (await turn_store.claim_outbox_message(lock, row)).claimed
        recovered, wait_ms = await turn_store.recover_interrupted(lock, 15_000)
        assert recovered == 0
        assert 13_000 < wait_ms <= 15_000
        # Its outcome lands meanwhile (whoever holds the turn): nothing is left to recover.
        await turn_store.record_send(lock, row, "sent", wamid=f"wamid.OUT{uuid.uuid4().hex}")
        assert await turn_store.recover_interrupted(lock, 15_000) == (0, 0)
        # A row whose send cannot be in flight any more is unknown.
        other = await _outbox(turn_db, ws, conv, "stuck", position=1)
        assert (await turn_store.claim_outbox_message(lock, other)).claimed
        assert await turn_store.recover_interrupted(lock, 0) == (1, 0)
    finally:
        await lock.release()
    statuses = await _statuses(turn_db, conv)
    assert statuses["in flight"][0] == "sent"
    assert statuses["stuck"][0] == "unknown"


async def test_skip_outbox_touches_only_the_named_pending_rows(
    turn_db: asyncpg.Pool, locks: TurnLocks
) -> None:
    ws = await make_workspace(turn_db)
    conv = await _conversation(turn_db, ws)
    stale = await _outbox(turn_db, ws, conv, "stale", position=0)
    sent = await _outbox(turn_db, ws, conv, "sent", position=1, status="sent")
    await _outbox(turn_db, ws, conv, "kept", position=2)
    lock = await _take(locks, conv)
    try:
        assert await turn_store.skip_outbox(lock, [stale, sent], "window closed") == 1
    finally:
        await lock.release()
    assert await _statuses(turn_db, conv) == {
        "stale": ("skipped", "window closed"),
        "sent": ("sent", None),
        "kept": ("pending", None),
    }


async def test_a_recorded_wamid_picks_up_statuses_that_arrived_before_it(
    turn_db: asyncpg.Pool, locks: TurnLocks
) -> None:
    ws = await make_workspace(turn_db)
    conv = await _conversation(turn_db, ws)
    row = await _outbox(turn_db, ws, conv, "hola", position=0)
    wamid = f"wamid.OUT{uuid.uuid4().hex}"
    await turn_db.execute(
        "insert into public.message_status_orphans (wamid, status, status_timestamp)"
        " values ($1, 'delivered', now() + interval '1 second')",
        wamid,
    )
    lock = await _take(locks, conv)
    try:
        assert (await turn_store.claim_outbox_message(lock, row)).claimed
        await turn_store.record_send(lock, row, "sent", wamid=wamid)
    finally:
        await lock.release()
    state = await turn_db.fetchrow("select status, wamid from public.messages where id = $1", row)
    assert state is not None
    assert (state["status"], state["wamid"]) == ("delivered", wamid)
    assert (
        await turn_db.fetchval(
            "select count(*) from public.message_status_orphans where wamid = $1", wamid
        )
        == 0
    )
