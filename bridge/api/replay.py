"""`bridge replay`: process stored webhook events again, after a fix.

Each event's raw body goes through the webhook's own normaliser and intake
(`public.ingest_whatsapp_webhook` with `p_replay_of`), one transaction per event, so the outcome
is recorded on that event (never a new one) and a replay stores nothing twice: messages are
unique on wamid, statuses only move forward. New inbound messages get their worker job rung here;
when Redis is away the worker's sweeper finds them. A dry run processes each event the same way
and rolls it back, so it says what would happen and changes nothing (sequence numbers aside).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
from pydantic import ValidationError

from bridge.api.intake import IntakeResult, StoreUnavailable, intake_result
from bridge.api.payloads import Webhook
from bridge.queue import Enqueuer, TurnJob

# Events replayed per call unless told otherwise; the command says when more are left.
DEFAULT_LIMIT = 1000


@dataclass(frozen=True)
class Selection:
    """Which events: by id (any state), else by creation time and state."""

    ids: Sequence[str] = ()
    since: datetime | None = None
    until: datetime | None = None
    failed_only: bool = True
    limit: int = DEFAULT_LIMIT


@dataclass(frozen=True)
class StoredEvent:
    id: str
    created_at: datetime
    provider: str
    status: str
    attempts: int
    error_message: str | None
    payload: Any


@dataclass(frozen=True)
class Outcome:
    event: StoredEvent
    result: IntakeResult | None  # None: the intake was not reached (see error)
    error: str | None = None

    @property
    def failed(self) -> bool:
        return self.result is None or self.result.failed

    def describe(self, *, dry_run: bool) -> str:
        head = f"{self.event.id} {self.event.created_at.isoformat()} [{self.event.status}]"
        would = "would " if dry_run else ""
        if self.result is None:
            return f"{head} {would}fail before the intake: {self.error}"
        r = self.result
        if r.failed:
            return f"{head} {would}still fail: {r.error}"
        return (
            f"{head} {would}store {r.stored} message(s) ({r.duplicates} already stored, "
            f"{len(r.new_inbound)} new inbound), apply {r.statuses_applied} status(es), "
            f"keep {r.statuses_orphaned} orphan(s)"
            + (f", unroutable: {', '.join(r.unroutable)}" if r.unroutable else "")
        )


_SELECT = """
select e.id::text, e.created_at, e.provider, e.status, e.attempts, e.error_message,
       e.payload::text as payload
from public.whatsapp_webhook_events e
where ($1::uuid[] is null or e.id = any($1::uuid[]))
  and ($2::timestamptz is null or e.created_at >= $2)
  and ($3::timestamptz is null or e.created_at < $3)
  and (not $4 or e.status = 'failed')
order by e.created_at, e.id
limit $5
"""

_INGEST = (
    "select public.ingest_whatsapp_webhook($1, $2::jsonb, $3::jsonb, $4::jsonb, $5::uuid)::text"
)


async def select_events(conn: asyncpg.Connection, selection: Selection) -> list[StoredEvent]:
    """The selected events, oldest first, at most `limit + 1` (one more says more are left)."""
    ids = list(selection.ids) or None
    rows = await conn.fetch(
        _SELECT,
        ids,
        selection.since,
        selection.until,
        selection.failed_only and not ids,
        selection.limit + 1,
    )
    return [
        StoredEvent(
            id=r["id"],
            created_at=r["created_at"],
            provider=r["provider"],
            status=r["status"],
            attempts=r["attempts"],
            error_message=r["error_message"],
            payload=json.loads(r["payload"]),
        )
        for r in rows
    ]


async def replay_event(conn: asyncpg.Connection, event: StoredEvent, *, dry_run: bool) -> Outcome:
    """Normalise the stored body as the webhook does and run the intake on it for this event,
    committed, or rolled back on a dry run."""
    try:
        batch = Webhook.model_validate(event.payload).normalise()
    except (ValidationError, ValueError) as exc:
        return Outcome(event, None, f"the normaliser refuses the body: {str(exc)[:500]}")
    transaction = conn.transaction()
    await transaction.start()
    try:
        answer = await conn.fetchval(
            _INGEST,
            event.provider,
            json.dumps(event.payload),
            json.dumps(batch.messages),
            json.dumps(batch.statuses),
            event.id,
        )
        result = intake_result(json.loads(answer))
    except (asyncpg.PostgresError, StoreUnavailable) as exc:
        await transaction.rollback()
        code = getattr(exc, "sqlstate", None)
        return Outcome(event, None, f"{code or type(exc).__name__}: {exc}")
    except BaseException:
        await transaction.rollback()
        raise
    if dry_run:
        await transaction.rollback()
    else:
        await transaction.commit()
    return Outcome(event, result)


async def ring(enqueuer: Enqueuer, outcomes: Sequence[Outcome]) -> int:
    """Enqueue the worker's job for each new inbound message the replay stored; returns how
    many were queued. Raises when Redis is away (the sweeper then finds the messages)."""
    jobs = [
        TurnJob.for_message(str(m["conversation_id"]), str(m["message_id"]), None)
        for o in outcomes
        if o.result is not None
        for m in o.result.new_inbound
    ]
    return await enqueuer.enqueue(jobs)
