"""The sender: pending outbox rows of a conversation go out in order, with their delays.

Before each send the row is claimed (`turn_store.claim_outbox_message`): the turn is still this
worker's (fence), no human took the conversation over, the agent is still on and no newer inbound
message arrived; a reply that should not go out is `skipped` with the reason (the next turn
answers everything). The handoff message is exempt from the "agent on" check: the handoff itself
switched it off. So are a member's messages (`human`: a text, only inside the 24-hour window, else
it fails with the reason; `template`: an approved template, at any time). A row is `sending` before
the API call, so after a crash mid-call its outcome is known to be unknown: it becomes `unknown`
(once no send can still be in flight: `in_flight_ms` after its claim) and is never re-sent
blindly; so does an answer without a well-formed message id. Throttled sends wait as
`jobs.retry` says; a turn that lost its lock meanwhile gives the row back as `pending`. A send the operator's endpoint policy refuses (a channel URL
that is not allowed, the default token bound elsewhere) is `failed` with the reason and never
reaches any server (`jobs.whatsapp_api.SendPolicy`).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from jobs import retry, turn_store
from jobs.checkpoints import checkpoint
from jobs.lock import ConversationLock, FenceLost
from jobs.turn_store import OutboxRow
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


# A claimed row's send ends within the send timeout; its outcome is recorded this much later at
# most once the database answers.
IN_FLIGHT_MARGIN_SECONDS = 2.0


def in_flight_ms(send_timeout_seconds: float) -> int:
    """How long after its claim a `sending` row may still be in flight."""
    return int((send_timeout_seconds + IN_FLIGHT_MARGIN_SECONDS) * 1000)


@dataclass
class SendReport:
    sent: int = 0
    skipped: int = 0
    failed: int = 0
    unknown: int = 0
    # Why bot replies ended unknown or failed: the customer may have had no answer.
    unanswered: list[str] = field(default_factory=list)


async def send_pending(
    lock: ConversationLock,
    client: WhatsAppClient,
    channel: Channel,
    to: str,
    *,
    response_speed: float,
    throttle: retry.ThrottleBackoff,
    rows: list[OutboxRow] | None = None,
    group: bool = False,
) -> SendReport:
    """Send `rows` (the conversation's pending outbox when not given) in order; to the group
    `to` when `group`."""
    report = SendReport()
    if rows is None:
        rows = await turn_store.pending_outbox(lock)
    window_closed = False
    for index, row in enumerate(rows):
        if window_closed and row.kind != "template":
            continue  # skipped when WhatsApp said the window closed
        if row.delay_ms and response_speed > 0:
            await asyncio.sleep(row.delay_ms / 1000 * response_speed)
        claim = await turn_store.claim_outbox_message(lock, row.id)
        report.skipped += claim.skipped
        report.failed += claim.failed
        if not claim.claimed:
            continue  # a handoff message later in the list still goes out
        checkpoint("sending")
        outcome = await _send_one(lock, client, channel, to, row, throttle, group)
        await _record(lock, row, outcome, report)
        if isinstance(outcome, WindowClosed) and not window_closed:
            # WhatsApp delivers nothing but a template now: the texts after it are skipped.
            window_closed = True
            rest = [r.id for r in rows[index + 1 :] if r.kind != "template"]
            report.skipped += await turn_store.skip_outbox(
                lock, rest, "24 h customer-service window closed (131047)"
            )
    return report


async def _record(
    lock: ConversationLock, row: OutboxRow, outcome: str | SendError | None, report: SendReport
) -> None:
    """Record one send's outcome (and count it in `report`)."""
    if outcome is None:
        # Throttled, then the lock was lost: not sent, so the row is pending again for whoever
        # holds the turn now.
        await turn_store.record_send(lock, row.id, "pending", reason="throttled; lock lost")
        raise FenceLost("the lock was lost while a throttled send waited", session_lost=True)
    if isinstance(outcome, str):
        checkpoint("sent")
        await turn_store.record_send(lock, row.id, "sent", wamid=outcome)
        report.sent += 1
        return
    if isinstance(outcome, Ambiguous):
        await turn_store.record_send(lock, row.id, "unknown", reason=str(outcome)[:500])
        report.unknown += 1
        if row.kind == "reply":
            report.unanswered.append(f"a reply's fate is unknown: {outcome}"[:300])
        return
    reason = str(outcome)
    if isinstance(outcome, WindowClosed):
        reason = f"24-hour customer service window closed; send a template instead: {reason}"
    await turn_store.record_send(lock, row.id, "failed", code=outcome.code, reason=reason[:500])
    report.failed += 1
    if row.kind == "reply":
        report.unanswered.append(f"a reply failed: {reason}"[:300])


async def _send_one(
    lock: ConversationLock,
    client: WhatsAppClient,
    channel: Channel,
    to: str,
    row: OutboxRow,
    throttle: retry.ThrottleBackoff,
    group: bool,
) -> str | SendError | None:
    """The wamid, or the error that ended the attempts (throttling is retried here); None when
    the turn's lock was lost while a throttle was waited out (nothing was sent)."""
    attempt = 0
    while True:
        try:
            if row.kind == "template":
                if row.template is None:
                    return Rejected("a template row without its template object")
                return await client.send_template(channel, to, row.template, group=group)
            return await client.send_text(channel, to, row.body, group=group)
        except Throttled as exc:
            wait = throttle.wait(attempt, exc.code or 0)
            if wait is None:
                return Rejected(f"still throttled after {attempt + 1} attempts: {exc}", exc.code)
            log.info("jobs.send.throttled", extra={"code": exc.code, "wait_s": wait})
            await asyncio.sleep(wait)
            if lock.lost:
                return None
            attempt += 1
        except SendError as exc:
            return exc
