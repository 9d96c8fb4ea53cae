"""The sender: pending outbox rows of a conversation go out in order, with their delays.

Before each send it re-checks, on the lock holder's connection, that the turn is still this
worker's (fence), that the agent is still on, and that no newer inbound message arrived; a reply
that should not go out is marked `skipped` with the reason (the next turn answers everything).
The handoff message is exempt from the "agent on" check: the handoff itself switched it off.
A row is marked `sending` before the API call, so after a crash mid-call its outcome is known to
be unknown: it becomes `unknown` and is never re-sent blindly.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from jobs import turn_store
from jobs.checkpoints import checkpoint
from jobs.lock import ConversationLock
from jobs.whatsapp_api import (
    Ambiguous,
    Channel,
    Rejected,
    SendError,
    Throttled,
    WhatsAppClient,
    WindowClosed,
)

log = logging.getLogger(__name__)

MAX_THROTTLE_RETRIES = 3
PAIR_RATE_CODE = 131056  # same business number → same user: about one message per 6 s


@dataclass(frozen=True)
class OutboxRow:
    id: uuid.UUID
    kind: str
    body: str
    delay_ms: int


@dataclass
class SendReport:
    sent: int = 0
    skipped: int = 0
    failed: int = 0
    unknown: int = 0


Sleep = Callable[[float], Awaitable[None]]


async def recover_interrupted(lock: ConversationLock) -> int:
    """Rows left `sending` by a worker that died mid-call: their outcome is unknown."""
    async with lock.conn.transaction():
        await lock.assert_fence()
        result = await lock.conn.execute(
            """
            update public.messages
               set status = 'unknown', skip_reason = 'worker stopped during the send call'
             where conversation_id = $1 and direction = 'outbound' and status = 'sending'
            """,
            lock.conversation_id,
        )
    return int(result.split()[-1])


async def pending(lock: ConversationLock) -> list[OutboxRow]:
    rows = await lock.conn.fetch(
        """
        select id, outbox_kind, content, coalesce(delay_ms, 0) as delay_ms from public.messages
         where conversation_id = $1 and direction = 'outbound' and status = 'pending'
         order by created_at, outbox_position, id
        """,
        lock.conversation_id,
    )
    return [
        OutboxRow(
            r["id"],
            r["outbox_kind"] or "reply",
            str(json.loads(r["content"]).get("body", "")),
            r["delay_ms"],
        )
        for r in rows
    ]


async def _skip_rest(lock: ConversationLock, ids: list[uuid.UUID], reason: str) -> None:
    async with lock.conn.transaction():
        await lock.assert_fence()
        await lock.conn.execute(
            "update public.messages set status = 'skipped', skip_reason = $2"
            " where id = any($1) and status = 'pending'",
            ids,
            reason,
        )


async def send_pending(
    lock: ConversationLock,
    client: WhatsAppClient,
    channel: Channel,
    to: str,
    *,
    response_speed: float,
    backoff_seconds: float,
    sleep: Sleep = asyncio.sleep,
    rows: list[OutboxRow] | None = None,
) -> SendReport:
    """Send `rows` (read from the database when not given) in order."""
    report = SendReport()
    if rows is None:
        rows = await pending(lock)
    for index, row in enumerate(rows):
        if row.delay_ms and response_speed > 0:
            await sleep(row.delay_ms / 1000 * response_speed)
        # Fence, agent still on, no newer inbound: checked and claimed in one statement; a
        # reply that must not go out is skipped together with the turn's later replies.
        claim = await turn_store.claim_outbox_message(lock, row.id)
        if claim == "gone":
            continue
        if claim != "claimed":
            report.skipped += sum(1 for r in rows[index:] if r.kind == "reply")
            continue  # a handoff message later in the list still goes out
        checkpoint("sending")
        outcome = await _send_one(client, channel, to, row, backoff_seconds, sleep)
        if isinstance(outcome, str):
            checkpoint("sent")
            await turn_store.record_send(lock, row.id, "sent", wamid=outcome)
            report.sent += 1
            continue
        if isinstance(outcome, Ambiguous):
            await turn_store.record_send(lock, row.id, "unknown", reason=str(outcome)[:500])
            report.unknown += 1
            continue
        await turn_store.record_send(
            lock, row.id, "failed", code=outcome.code, reason=str(outcome)[:500]
        )
        report.failed += 1
        if isinstance(outcome, WindowClosed):
            rest = [r.id for r in rows[index + 1 :]]
            await _skip_rest(lock, rest, "24 h customer-service window closed (131047)")
            report.skipped += len(rest)
            break
    return report


async def _send_one(
    client: WhatsAppClient,
    channel: Channel,
    to: str,
    row: OutboxRow,
    backoff_seconds: float,
    sleep: Sleep,
) -> str | SendError:
    """The wamid, or the error that ended the attempts (throttling is retried here)."""
    for attempt in range(MAX_THROTTLE_RETRIES + 1):
        try:
            return await client.send_text(channel, to, row.body)
        except Throttled as exc:
            if attempt == MAX_THROTTLE_RETRIES:
                return Rejected(f"still throttled after {attempt + 1} attempts: {exc}", exc.code)
            wait = backoff_seconds * (2**attempt)
            if exc.code == PAIR_RATE_CODE:
                wait = max(wait, 6 * backoff_seconds)
            log.info("jobs.send.throttled", extra={"code": exc.code, "wait_s": wait})
            await sleep(wait)
        except SendError as exc:
            return exc
    raise AssertionError("unreachable")
