"""The sweeper: rings the doorbell again for inbound messages nobody has processed.

The webhook enqueues after it answers, so a Redis outage, a crash between commit and enqueue or a
lost job leaves a stored message without a job. Postgres knows: inbound rows stay
`processed_by_agent = false` until a turn handles them. One job per conversation is enough, since
a turn drains every unprocessed message of its conversation.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from datetime import timedelta

import asyncpg
from arq import ArqRedis

from bridge.queue import JobName

log = logging.getLogger(__name__)

# A re-sweep of the same message gets a fresh job id once per bucket, so a sweep job that already
# ran (its result key blocks the id) does not stop a later sweep from trying again.
SWEEP_BUCKET_SECONDS = 60

_OLDEST_UNPROCESSED = """
select distinct on (m.conversation_id) m.id, m.conversation_id
from public.messages m
where m.direction = 'inbound' and not m.processed_by_agent
  and m.created_at < now() - $1::interval
order by m.conversation_id, m.timestamp, m.id
limit $2
"""


def sweep_job_id(message_id: str, now: float | None = None) -> str:
    bucket = int((now if now is not None else time.time()) // SWEEP_BUCKET_SECONDS)
    return f"sweep:{message_id}:{bucket}"


async def requeue_unprocessed(
    pool: asyncpg.Pool, redis: ArqRedis, *, older_than: timedelta, limit: int = 1000
) -> int:
    """Enqueue a job for each conversation with inbound messages older than `older_than` that
    are still unprocessed; returns how many jobs were newly queued."""
    rows = await pool.fetch(_OLDEST_UNPROCESSED, older_than, limit)
    queued = await _enqueue_turns(
        redis,
        ((str(r["conversation_id"]), str(r["id"]), sweep_job_id(str(r["id"]))) for r in rows),
    )
    if queued:
        log.info("jobs.sweeper.requeued", extra={"jobs": queued})
    return queued


_STALLED_OUTBOX = """
select distinct m.conversation_id
from public.messages m
where m.direction = 'outbound' and m.status in ('pending', 'sending')
  and m.created_at < now() - $1::interval
limit $2
"""


async def requeue_stalled_outbox(
    pool: asyncpg.Pool, redis: ArqRedis, *, older_than: timedelta, limit: int = 1000
) -> int:
    """Conversations whose outbox has rows a dead worker left pending or sending: a job resumes
    them (pending rows are sent, sending ones become `unknown`)."""
    rows = await pool.fetch(_STALLED_OUTBOX, older_than, limit)
    queued = await _enqueue_turns(
        redis,
        (
            (str(r["conversation_id"]), None, sweep_job_id(f"outbox:{r['conversation_id']}"))
            for r in rows
        ),
    )
    if queued:
        log.info("jobs.sweeper.outbox_requeued", extra={"jobs": queued})
    return queued


async def _enqueue_turns(redis: ArqRedis, turns: Iterable[tuple[str, str | None, str]]) -> int:
    """One turn job per (conversation id, message id or None, job id); returns how many were
    newly queued (an id already queued, running or kept as a result is not)."""
    queued = 0
    for conversation_id, message_id, job_id in turns:
        job = await redis.enqueue_job(
            JobName.PROCESS_INBOUND.value,
            conversation_id=conversation_id,
            message_id=message_id,
            correlation_id=None,
            _job_id=job_id,
        )
        queued += job is not None
    return queued


async def close_idle_sessions(pool: asyncpg.Pool, *, idle_for: timedelta) -> int:
    """Close active sessions nobody wrote to for `idle_for`: a customer who comes back later
    starts a fresh session instead of landing in a stale mode."""
    result = await pool.execute(
        """
        update public.agent_sessions
           set status = 'closed', closed_at = now(), close_reason = 'idle'
         where status = 'active' and last_activity_at < now() - $1::interval
        """,
        idle_for,
    )
    return int(result.split()[-1])
