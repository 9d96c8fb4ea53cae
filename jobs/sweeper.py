"""The sweeper: rings the doorbell again for inbound messages nobody has processed, and for
outbox rows a dead worker left behind.

The webhook enqueues after it answers, so a Redis outage, a crash between commit and enqueue or a
lost job leaves a stored message without a job. Postgres knows: inbound rows stay
`processed_by_agent = false` until a turn handles them. One job per conversation is enough, since
a turn drains every unprocessed message of its conversation.
"""

from __future__ import annotations

import logging
from datetime import timedelta

import asyncpg

from bridge.queue import JobQueue, TurnJob, sweep_job_id

log = logging.getLogger(__name__)

_OLDEST_UNPROCESSED = """
select distinct on (m.conversation_id) m.id, m.conversation_id
from public.messages m
where m.direction = 'inbound' and not m.processed_by_agent
  and m.created_at < now() - $1::interval
order by m.conversation_id, m.timestamp, m.id
limit $2
"""


async def requeue_unprocessed(
    pool: asyncpg.Pool, queue: JobQueue, *, older_than: timedelta, limit: int = 1000
) -> int:
    """Enqueue a job for each conversation with inbound messages older than `older_than` that
    are still unprocessed; returns how many jobs were newly queued."""
    rows = await pool.fetch(_OLDEST_UNPROCESSED, older_than, limit)
    queued = await queue.enqueue(
        [
            TurnJob(str(r["conversation_id"]), str(r["id"]), None, sweep_job_id(str(r["id"])))
            for r in rows
        ]
    )
    if queued:
        log.info("jobs.sweeper.requeued", extra={"jobs": queued})
    return queued


# Outbox rows pending or in flight whose conversation no turn holds (its advisory lock is free):
# the worker that was sending them died. A running turn holds the lock however long its replies
# wait, so the age only spares a row the moment between its commit and the turn's first claim.
_STALLED_OUTBOX = """
with held as (
  select (l.classid::bigint << 32) | l.objid::bigint as key
  from pg_catalog.pg_locks l
  where l.locktype = 'advisory' and l.granted
)
select distinct m.conversation_id
from public.messages m
where m.direction = 'outbound' and m.status in ('pending', 'sending')
  and m.created_at < now() - $1::interval
  and private.conversation_lock_key(m.conversation_id) not in (select key from held)
limit $2
"""


# With the sweep every 10 s, a dead worker's outbox is resumed (and its typing stopped) within
# about 15 s of its death.
STALLED_OUTBOX_AGE = timedelta(seconds=5)


async def requeue_stalled_outbox(
    pool: asyncpg.Pool, queue: JobQueue, *, older_than: timedelta, limit: int = 1000
) -> int:
    """Conversations whose outbox has rows a dead worker left pending or sending (no turn holds
    the conversation): a job resumes them (pending rows are sent, sending ones become `unknown`,
    and the dead turn's typing indicator is stopped)."""
    rows = await pool.fetch(_STALLED_OUTBOX, older_than, limit)
    queued = await queue.enqueue(
        [
            TurnJob(
                str(r["conversation_id"]),
                None,
                None,
                sweep_job_id(f"outbox:{r['conversation_id']}"),
            )
            for r in rows
        ]
    )
    if queued:
        log.info("jobs.sweeper.outbox_requeued", extra={"jobs": queued})
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
