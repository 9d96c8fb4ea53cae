"""The SQL of an agent turn: one call to take the conversation (lock, snapshot and, when the turn
can start at once, contact and session), one transaction to commit a decision. The functions
live in the database (`supabase/migrations/*_turn*.sql`) so a turn costs a few round trips; every
write asserts the turn's fencing epoch, so a worker that lost its lock cannot change anything.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeAlias

import asyncpg

from jobs.engine.protocol import Contact, InboundMessage, Session, TurnResult
from jobs.lock import ConversationLock, fence_errors

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

    Conn: TypeAlias = PoolConnectionProxy[asyncpg.Record]
else:
    Conn = object  # only a type: asyncpg's proxy is not subscriptable at run time

SESSION_CONFLICT_SQLSTATE = "WBS01"


class SessionConflict(Exception):
    """The session's version moved under the turn (it cannot while the lock is held, unless a
    human edited it): the turn is retried and decides again from the fresh state."""


@dataclass(frozen=True)
class ConversationContext:
    conversation_id: uuid.UUID
    workspace_id: uuid.UUID
    phone: str | None
    bsuid: str | None
    profile_name: str | None
    phone_number_id: str
    provider: str
    api_base_url: str | None
    access_token: str | None
    api_key: str | None
    config: dict[str, Any]

    @property
    def agent_id(self) -> str:
        return str(self.config.get("conversational_agent_id") or "somnio-sales-v1")

    @property
    def response_speed(self) -> float:
        return float(self.config.get("response_speed") or 0)

    @property
    def reply_window_ms(self) -> float:
        return float(self.config.get("reply_window_ms") or 0)


@dataclass(frozen=True)
class Snapshot:
    context: ConversationContext
    enabled: bool
    messages: list[InboundMessage]
    newest_age_ms: float | None
    outbox_pending: int
    outbox_sending: int


def _inbound(row: dict[str, Any]) -> InboundMessage:
    content: dict[str, Any] = row["content"]
    body = content.get("body")
    readable = row["type"] in ("text", "interactive", "button") or (
        isinstance(body, str) and not body.startswith("[")
    )
    return InboundMessage(
        message_id=uuid.UUID(row["id"]),
        wamid=row["wamid"],
        type=row["type"],
        text=body if readable and isinstance(body, str) else None,
        content=content,
        timestamp=datetime.fromisoformat(row["timestamp"]),
    )


async def snapshot(conn: Conn, conversation_id: uuid.UUID) -> Snapshot | None:
    raw = await conn.fetchval("select private.turn_snapshot($1)", conversation_id)
    return None if raw is None else _snapshot(json.loads(raw))


def _snapshot(data: dict[str, Any]) -> Snapshot:
    context = ConversationContext(
        conversation_id=uuid.UUID(data["conversation_id"]),
        workspace_id=uuid.UUID(data["workspace_id"]),
        phone=data["phone"],
        bsuid=data["bsuid"],
        profile_name=data["profile_name"],
        phone_number_id=data["phone_number_id"],
        provider=data["provider"],
        api_base_url=data["api_base_url"],
        access_token=data["access_token"],
        api_key=data["api_key"],
        config=data["config"],
    )
    return Snapshot(
        context=context,
        enabled=bool(data["enabled"]),
        messages=[_inbound(m) for m in data["messages"]],
        newest_age_ms=None if data["newest_age_ms"] is None else float(data["newest_age_ms"]),
        outbox_pending=int(data["outbox_pending"]),
        outbox_sending=int(data["outbox_sending"]),
    )


@dataclass(frozen=True)
class Begun:
    """A taken conversation: its snapshot (None if the conversation is gone) and, when the turn
    could start at once, its contact and session already prepared."""

    lock: ConversationLock
    snapshot: Snapshot | None
    prepared: tuple[Contact, Session] | None


async def begin(
    pool: asyncpg.Pool, conversation_id: uuid.UUID, holder: str, *, prepare: bool
) -> Begun | None:
    """One round trip (`private.begin_turn`): the lock when there is work, the snapshot and,
    with `prepare`, the contact and session of a turn that can start now. None when busy or
    when there is nothing to do."""

    async def call(conn: Conn) -> tuple[int, dict[str, Any]] | None:
        raw = await conn.fetchval(
            "select private.begin_turn($1, $2, $3)", conversation_id, holder, prepare
        )
        if raw is None:
            return None
        data: dict[str, Any] = json.loads(raw)
        return int(data["epoch"]), data

    taken = await ConversationLock.try_take(pool, conversation_id, call)
    if taken is None:
        return None
    lock, data = taken
    snap = None if data["snapshot"] is None else _snapshot(data["snapshot"])
    prepared = data["prepared"]
    return Begun(
        lock=lock,
        snapshot=snap,
        prepared=None if prepared is None else _prepared(prepared, prepared["agent_id"]),
    )


async def _fenced(lock: ConversationLock, query: str, *args: Any) -> Any:
    try:
        with fence_errors():
            return await lock.conn.fetchval(query, *args)
    except asyncpg.PostgresError as exc:
        if getattr(exc, "sqlstate", None) == SESSION_CONFLICT_SQLSTATE:
            raise SessionConflict(str(exc)) from exc
        raise


async def mark_processed(lock: ConversationLock, message_ids: list[uuid.UUID]) -> None:
    """The agent is off for this conversation: the messages are handled, nothing else."""
    async with lock.conn.transaction():
        await lock.assert_fence()
        await lock.conn.execute(
            "update public.messages set processed_by_agent = true where id = any($1)", message_ids
        )


async def prepare(lock: ConversationLock, agent_id: str) -> tuple[Contact, Session]:
    """The conversation's contact (linked or created, race-safe) and its active session (fresh
    after a handoff or close, so re-enabling the bot never finds it mute)."""
    data = json.loads(
        await _fenced(
            lock,
            "select private.prepare_turn($1, $2, $3)",
            lock.conversation_id,
            lock.epoch,
            agent_id,
        )
    )
    return _prepared(data, agent_id)


def _prepared(data: dict[str, Any], agent_id: str) -> tuple[Contact, Session]:
    c, s = data["contact"], data["session"]
    contact = Contact(id=uuid.UUID(c["id"]), name=c["name"], phone=c["phone"])
    session = Session(
        id=uuid.UUID(s["id"]),
        agent_id=agent_id,
        mode=s["mode"],
        state=s["state"],
        version=int(s["version"]),
        is_new=bool(s["is_new"]),
    )
    return contact, session


async def commit_decision(
    lock: ConversationLock, session: Session, messages: list[InboundMessage], result: TurnResult
) -> list[uuid.UUID]:
    """In one transaction: the user and assistant turns, the replies as pending outbox rows
    (sent_by_agent), the session's new mode/state, and the inbound messages marked processed.
    After this commit a retry never decides again for these messages; it only resumes sending."""
    replies = [
        {"text": r.text, "delay_ms": r.delay_ms, "template_id": r.template_id}
        for r in result.replies
    ]
    tools = [{"handoff": result.handoff_reason}] if result.handoff else []
    ids: list[uuid.UUID] = await _fenced(
        lock,
        "select private.commit_turn($1, $2, $3, $4, $5, $6::jsonb, $7, $8, $9, $10,"
        " $11::jsonb, $12::jsonb, $13)",
        lock.conversation_id,
        lock.epoch,
        session.id,
        session.version,
        result.mode,
        json.dumps(result.state),
        "\n".join(m.text or f"[{m.type}]" for m in messages),
        result.intent,
        result.confidence,
        result.tokens_used,
        json.dumps(tools),
        json.dumps(replies),
        [m.message_id for m in messages],
    )
    return ids


async def claim_outbox_message(lock: ConversationLock, message_id: uuid.UUID) -> str:
    """'claimed' (now `sending`), 'gone' (not pending any more), or why it was skipped."""
    status: str = await _fenced(
        lock,
        "select private.claim_outbox_message($1, $2, $3)",
        lock.conversation_id,
        lock.epoch,
        message_id,
    )
    return status


async def record_send(
    lock: ConversationLock,
    message_id: uuid.UUID,
    status: str,
    *,
    wamid: str | None = None,
    code: int | None = None,
    reason: str | None = None,
) -> None:
    await lock.conn.execute(
        "select private.record_outbox_send($1, $2, $3, $4, $5)",
        message_id,
        status,
        wamid,
        None if code is None else str(code),
        reason,
    )
