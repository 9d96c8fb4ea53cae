"""Every statement of an agent turn, each a call to a SQL function of `supabase/migrations/`:
`*_create_agent_turn_functions.sql` (the turn), `*_create_outbox_functions.sql` (the sender) or
`*_create_handoff_conversation.sql`, so a turn costs a few round trips, each on a pooled
connection (`ConversationLock.fetchval`). The lock's own statements (take, unlock) are in
`jobs.lock`. Every write asserts the turn's fencing epoch, so a worker that lost its lock cannot
change anything.

The database decides what a taken conversation needs next (`private.turn_verdict`), and the turn
branches on that `Verdict`: the rule has one owner.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import asyncpg

from jobs import database
from jobs.engine.protocol import Contact, InboundMessage, Session, TurnResult, readable_text
from jobs.lock import ConversationLock, LockSession

# WhatsApp's own limit on a text body: an engine never reads more of one message.
MAX_TEXT_CHARS = 4096
# The window of believable message times, as the webhook's intake clamps them.
EARLIEST_MESSAGE_TIME = datetime(2000, 1, 1, tzinfo=UTC)
MAX_CLOCK_AHEAD = timedelta(days=1)
# How long a send's outcome is tried again while the database is away (a restart, a failover).
RECORD_WITHIN_SECONDS = 60.0

VerdictKind = Literal["gone", "resume", "idle", "off", "wait", "handoff", "run"]
# What an outbox row is (messages.outbox_kind): the engine's reply, the handoff message, a
# member's text (public.send_message) or template (public.send_template).
OutboxKind = Literal["reply", "handoff", "human", "template"]


@dataclass(frozen=True)
class Conversation:
    """The conversation a turn answers, with its channel and workspace agent config."""

    conversation_id: uuid.UUID
    workspace_id: uuid.UUID
    phone: str | None
    bsuid: str | None
    profile_name: str | None
    # Null when the conversation has no channel of its workspace (the verdict is then `off`).
    phone_number_id: str | None
    provider: str
    api_base_url: str | None
    access_token: str | None
    api_key: str | None
    config: dict[str, Any]
    # A WhatsApp group's conversation: replies go to the group (only when the workspace lets
    # the agent answer groups).
    group_id: str | None = None

    @property
    def recipient(self) -> str:
        return self.group_id or self.phone or self.bsuid or ""

    @property
    def response_speed(self) -> float:
        return float(self.config.get("response_speed") or 0)


@dataclass(frozen=True)
class Verdict:
    """What a taken conversation needs now:

    gone     the conversation no longer exists
    resume   outbox rows a turn left pending or in flight come first
    idle     nothing to answer
    off      the agent is off for it (or paused: a human took it over): the messages are
             marked processed, nothing else
    wait     the reply window is open: look again in `wait_ms`
    handoff  the turn was asked to hand the messages to a human
    run      answer `messages`: `contact` and `session` are ready
    """

    kind: VerdictKind
    conversation: Conversation | None = None
    # The workspace's switch AND the conversation's override AND no human takeover's pause.
    agent_on: bool = False
    messages: tuple[InboundMessage, ...] = ()
    outbox_sending: int = 0
    wait_ms: float = 0
    contact: Contact | None = None
    session: Session | None = None

    @property
    def message_ids(self) -> list[uuid.UUID]:
        return [m.message_id for m in self.messages]


@dataclass(frozen=True)
class OutboxRow:
    id: uuid.UUID
    kind: str  # an OutboxKind
    body: str
    delay_ms: int
    # A template row's Cloud API `template` object (name, language, components).
    template: dict[str, Any] | None = None


@dataclass(frozen=True)
class Claim:
    """The answer of claiming an outbox row just before its send."""

    claimed: bool  # the row is `sending` now: send it
    reason: str | None = None  # why it was not: 'gone', the skip reason, or 'window closed'
    skipped: int = 0  # rows skipped with it (this one and the turn's later replies)
    failed: int = 0  # a member's text outside the 24-hour window: failed with the reason


async def begin(
    session: LockSession,
    db: asyncpg.Pool,
    conversation_id: uuid.UUID,
    holder: str,
    *,
    handing_off: bool = False,
) -> tuple[ConversationLock, Verdict] | None:
    """Take the conversation and read its first verdict; None when it is busy or has nothing
    to do."""
    taken = await ConversationLock.take(
        session, db, conversation_id, holder, handing_off=handing_off
    )
    if taken is None:
        return None
    lock, begun = taken
    try:
        return lock, _verdict(begun)
    except BaseException:
        await lock.release()  # whatever the rows held, the lock goes back
        raise


async def verdict(lock: ConversationLock, *, handing_off: bool = False) -> Verdict:
    """The conversation's verdict again, after the turn did what the last one asked."""
    return _verdict(
        json.loads(
            await lock.fetchval(
                "select private.turn_verdict($1, $2, $3)",
                lock.conversation_id,
                lock.epoch,
                handing_off,
            )
        )
    )


def _verdict(data: dict[str, Any]) -> Verdict:
    snapshot = data.get("snapshot")
    if snapshot is None:
        return Verdict("gone")
    prepared = data.get("prepared")
    return Verdict(
        kind=data["verdict"],
        conversation=_conversation(snapshot),
        agent_on=bool(snapshot["enabled"]),
        messages=tuple(_inbound(m) for m in snapshot["messages"]),
        outbox_sending=int(snapshot["outbox_sending"]),
        wait_ms=float(data.get("wait_ms") or 0),
        contact=None
        if prepared is None or prepared["contact"] is None
        else _contact(prepared["contact"]),
        session=None if prepared is None else _session(prepared["session"], data["agent_id"]),
    )


def _conversation(data: dict[str, Any]) -> Conversation:
    return Conversation(
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
        group_id=data.get("group_id"),
    )


def _inbound(row: dict[str, Any]) -> InboundMessage:
    # Rows are written by tenants and providers: read them defensively (a content that is not
    # an object, a timestamp Python cannot hold, a text longer than WhatsApp allows).
    raw_content = row.get("content")
    content: dict[str, Any] = raw_content if isinstance(raw_content, dict) else {}
    stored_type = row.get("type")
    message_type = stored_type if isinstance(stored_type, str) else "unknown"
    text = readable_text(message_type, content)
    return InboundMessage(
        message_id=uuid.UUID(row["id"]),
        wamid=row.get("wamid") if isinstance(row.get("wamid"), str) else None,
        type=message_type,
        text=None if text is None else text[:MAX_TEXT_CHARS],
        content=content,
        timestamp=message_time(row.get("timestamp")),
    )


def message_time(value: Any, *, now: datetime | None = None) -> datetime:
    """A stored message time as the engines may use it: Postgres' JSON of a timestamptz
    (`infinity`, a BC date or a year past 9999 cannot be read by Python) and anything outside
    the window the intake accepts count as now, when the turn reads it."""
    now = now or datetime.now(UTC)
    try:
        parsed = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        return now
    if not EARLIEST_MESSAGE_TIME <= parsed <= now + MAX_CLOCK_AHEAD:
        return now
    return parsed


def _contact(data: dict[str, Any]) -> Contact:
    return Contact(id=uuid.UUID(data["id"]), name=data["name"], phone=data["phone"])


def _session(data: dict[str, Any], agent_id: str) -> Session:
    return Session(
        id=uuid.UUID(data["id"]),
        agent_id=agent_id,
        mode=data["mode"],
        state=data["state"],
        version=int(data["version"]),
        is_new=bool(data["is_new"]),
    )


async def skip_turn(lock: ConversationLock, message_ids: list[uuid.UUID]) -> None:
    """The agent is off for this conversation: the messages are handled, nothing else."""
    await lock.fetchval(
        "select private.skip_turn($1, $2, $3)",
        lock.conversation_id,
        lock.epoch,
        message_ids,
    )


async def commit_decision(
    lock: ConversationLock,
    session: Session,
    messages: tuple[InboundMessage, ...],
    result: TurnResult,
) -> list[OutboxRow]:
    """In one transaction: the user and assistant turns, the replies as pending outbox rows
    (sent_by_agent), the session's new mode/state, and the inbound messages marked processed.
    After this commit a retry never decides again for these messages; it only resumes sending.
    Returns the new outbox rows: the conversation's whole outbox, since a turn starts only once
    earlier rows are resumed."""
    replies = [
        {"text": r.text, "delay_ms": r.delay_ms, "template_id": r.template_id}
        for r in result.replies
    ]
    tools = [{"handoff": result.handoff_reason}] if result.handoff else []
    ids: list[uuid.UUID] = await lock.fetchval(
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
    return [
        OutboxRow(row_id, "reply", reply.text, reply.delay_ms)
        for row_id, reply in zip(ids, result.replies, strict=True)
    ]


async def hand_off(
    lock: ConversationLock, reason: str, message_ids: list[uuid.UUID]
) -> dict[str, Any]:
    """One transaction (`private.handoff_conversation`): the messages marked processed, bot
    off, session handed off, a task with its assignee, the handoff message queued."""
    result: dict[str, Any] = json.loads(
        await lock.fetchval(
            "select private.handoff_conversation($1, $2, $3, $4)",
            lock.conversation_id,
            reason,
            lock.epoch,
            message_ids,
        )
    )
    return result


async def recover_interrupted(lock: ConversationLock, in_flight_ms: int) -> tuple[int, float]:
    """Rows left `sending` by a worker that died mid-call become `unknown`: how many, and in how
    many ms to look again at rows claimed too recently to tell (their send may still be in
    flight in a worker that lost only its lock)."""
    data = json.loads(
        await lock.fetchval(
            "select private.recover_outbox($1, $2, $3)",
            lock.conversation_id,
            lock.epoch,
            in_flight_ms,
        )
    )
    return int(data["recovered"]), float(data["wait_ms"])


async def pending_outbox(lock: ConversationLock) -> list[OutboxRow]:
    rows = json.loads(
        await lock.fetchval("select private.pending_outbox($1)", lock.conversation_id)
    )
    return [
        OutboxRow(
            uuid.UUID(r["id"]),
            r["kind"],
            r["body"],
            int(r["delay_ms"]),
            r.get("template") if isinstance(r.get("template"), dict) else None,
        )
        for r in rows
    ]


async def claim_outbox_message(lock: ConversationLock, message_id: uuid.UUID) -> Claim:
    """Fence, agent still on (no human took over), no newer inbound: checked and claimed in one
    statement. A reply that must not go out is skipped together with the turn's later replies;
    a member's text outside the 24-hour window fails with the reason."""
    data = json.loads(
        await lock.fetchval(
            "select private.claim_outbox_message($1, $2, $3)",
            lock.conversation_id,
            lock.epoch,
            message_id,
        )
    )
    return Claim(
        claimed=bool(data["claimed"]),
        reason=data["reason"],
        skipped=int(data["skipped"]),
        failed=int(data.get("failed") or 0),
    )


async def skip_outbox(lock: ConversationLock, message_ids: list[uuid.UUID], reason: str) -> int:
    """Pending rows that must not go out any more (the 24-hour window closed); how many."""
    count: int = await lock.fetchval(
        "select private.skip_outbox($1, $2, $3, $4)",
        lock.conversation_id,
        lock.epoch,
        message_ids,
        reason,
    )
    return count


async def record_send(
    lock: ConversationLock,
    message_id: uuid.UUID,
    status: str,
    *,
    wamid: str | None = None,
    code: int | None = None,
    reason: str | None = None,
) -> None:
    """The outcome of one send, a fact about WhatsApp: recorded whoever holds the turn now, and
    through a database outage of up to `RECORD_WITHIN_SECONDS` (a delivered reply recorded as
    such, not found `sending` later and called unknown). Recording it twice changes nothing."""
    await database.fetchval_through_outage(
        lock.db,
        "select private.record_outbox_send($1, $2, $3, $4, $5)",
        message_id,
        status,
        wamid,
        None if code is None else str(code),
        reason,
        within=RECORD_WITHIN_SECONDS,
    )
