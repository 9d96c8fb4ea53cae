"""The worker's functions: start-up and shutdown (what jobs share), the turn job, and the crons.

Start-up builds a Postgres pool for every statement (sized by `JOBS_DB_POOL_SIZE`: a turn holds a
connection only while a statement runs), the one session that holds the per-conversation advisory
locks (`jobs.lock.LockSession`; DATABASE_URL must be a direct or session-mode connection), the
engines, the WhatsApp client, the typing broadcaster and the job queue, and gates arq's health
record on the worker's ability to take turns (`jobs.health`). Shutdown waits a bounded time for each pool
and then drops its connections, so SIGTERM ends the process even when the database does not
answer. Crons: the sweeper (inbound messages without a job, outbox rows a dead worker left
behind) and idle sessions. `jobs.worker.WorkerSettings` hands them to arq with the process's
settings in `ctx`. A member's message (public.send_message, public.send_template) is announced on
the `bridge_outbox` notification channel: `OutboxListener` turns each notification into its
conversation's job, and the sweeper covers what a lost connection missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from datetime import timedelta
from typing import Any

import asyncpg
from arq import Retry
from redis.exceptions import RedisError

from bridge import gc_tuning, logs
from bridge.http_pool import pooled_session
from bridge.queue import JobQueue, TurnJob
from bridge.settings import Settings
from jobs import retry, sweeper
from jobs.engine.claude import ClaudeSettings
from jobs.engine.registry import EngineRegistry
from jobs.health import PROBE_SECONDS, HealthGate
from jobs.lock import RECONNECT_PAUSE_SECONDS, FenceLost, LockSession, can_take_turns
from jobs.metrics import MetricsServer, worker_metrics
from jobs.turn import TurnDeps, run_conversation
from jobs.typing_broadcast import TypingBroadcaster
from jobs.whatsapp_api import SendPolicy, WhatsAppClient

log = logging.getLogger(__name__)

# How long shutdown waits for a pool to close gracefully before dropping its connections.
POOL_CLOSE_SECONDS = 2.0
# Keep-alive connections for WhatsApp sends and typing broadcasts: requests beyond them wait for
# one to come free (a turn sends a few requests, most of its time is spent waiting elsewhere).
HTTP_CONNECTIONS = 64
# The channel public.send_message and public.send_template notify (payload: the conversation id).
OUTBOX_CHANNEL = "bridge_outbox"
# A lost listening connection is opened again after this long.
LISTEN_RETRY_SECONDS = 1.0
# How often an idle listening connection is checked to be alive.
LISTEN_PING_SECONDS = 30.0

# Conversations with a member's message still pending: enqueued whenever the listener (re)starts
# listening, since notifications sent while nobody listened are gone.
_PENDING_MEMBER_OUTBOX = """
select distinct m.conversation_id from public.messages m
where m.direction = 'outbound' and m.status = 'pending' and m.outbox_kind in ('human', 'template')
limit 1000
"""


def statement_seconds(job_timeout: float) -> float:
    """The longest a statement of the worker may run, and a cancelled one may take to be
    acknowledged (asyncpg bounds both by the connection's command timeout): a database that
    stopped answering fails the statement, whose turn is retried, instead of holding a job and
    its connection forever. A quarter of the job timeout, so a cancelled job (job timeout,
    SIGTERM) lets go of its connections well within it."""
    return min(60.0, max(5.0, job_timeout / 4))


async def _keep_session(conn: asyncpg.Connection) -> None:
    """No reset round trip (advisory unlock, CLOSE ALL, UNLISTEN, RESET ALL) when a connection
    goes back to a pool: the jobs keep no session state (the advisory locks live on the lock
    session, `jobs.lock`)."""


def llm_settings(settings: Settings) -> ClaudeSettings | None:
    """The LLM engine's settings, or None without an API key (that engine then hands off).
    Unset values keep the engine's defaults."""
    if settings.ANTHROPIC_API_KEY is None:
        return None
    given = {
        "model": settings.BRIDGE_LLM_MODEL,
        "max_tokens": settings.BRIDGE_LLM_MAX_TOKENS,
        "timeout_s": settings.BRIDGE_LLM_TIMEOUT_SECONDS,
        "base_url": settings.BRIDGE_LLM_BASE_URL,
    }
    options: dict[str, Any] = {name: value for name, value in given.items() if value is not None}
    return ClaudeSettings(api_key=settings.ANTHROPIC_API_KEY.get_secret_value(), **options)


class OutboxListener:
    """LISTENs on `OUTBOX_CHANNEL` over a connection of its own (a notification needs a session,
    so DATABASE_URL's session mode serves it) and enqueues the notified conversation's job: a
    member's message goes out within the worker's poll delay, through the same turn, lock and
    outbox as the bot's. A lost connection is opened again; on each (re)start the conversations
    with a member's message still pending are enqueued too."""

    def __init__(self, dsn: str, queue: JobQueue) -> None:
        self._dsn = dsn
        self._queue = queue
        self._tasks: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        while True:
            try:
                conn = await asyncpg.connect(self._dsn)
            except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
                log.warning("jobs.listen.connect_failed", extra={"detail": repr(exc)})
                await asyncio.sleep(LISTEN_RETRY_SECONDS)
                continue
            try:
                await self._listen(conn)
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("jobs.listen.lost", extra={"detail": repr(exc)})
            finally:
                conn.terminate()
            await asyncio.sleep(LISTEN_RETRY_SECONDS)

    async def _listen(self, conn: asyncpg.Connection) -> None:
        """Until the connection is lost: a dropped socket ends the wait at once, a silent one
        fails the periodic ping."""
        lost = asyncio.Event()
        conn.add_termination_listener(lambda _conn: lost.set())
        await conn.add_listener(OUTBOX_CHANNEL, self._notified)
        await self.catch_up(conn)
        while not lost.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(lost.wait(), LISTEN_PING_SECONDS)
            if not lost.is_set():
                await conn.fetchval("select 1", timeout=LISTEN_PING_SECONDS)

    async def catch_up(self, db: asyncpg.Connection | asyncpg.Pool) -> None:
        """Enqueue the conversations with a member's message still pending."""
        pending = await db.fetch(_PENDING_MEMBER_OUTBOX)
        await self._enqueue([str(r["conversation_id"]) for r in pending])

    def _notified(self, _conn: Any, _pid: int, _channel: str, payload: object) -> None:
        try:
            conversation_id = str(uuid.UUID(str(payload)))
        except ValueError:
            log.warning("jobs.listen.bad_payload", extra={"detail": str(payload)[:100]})
            return
        task = asyncio.get_running_loop().create_task(self._enqueue([conversation_id]))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _enqueue(self, conversation_ids: list[str]) -> None:
        jobs = [
            TurnJob(conv, None, None, f"outbox:{conv}:{uuid.uuid4().hex}")
            for conv in conversation_ids
        ]
        try:
            await self._queue.enqueue(jobs)
        except Exception as exc:  # the sweeper re-enqueues what this misses
            log.warning("jobs.listen.enqueue_failed", extra={"detail": repr(exc)})


async def startup(ctx: dict[str, Any]) -> None:
    settings: Settings = ctx["settings"]
    command_timeout = statement_seconds(settings.JOBS_JOB_TIMEOUT_SECONDS)
    logs.configure(settings.BRIDGE_LOG_LEVEL)
    ctx["queue"] = JobQueue(ctx["redis"], settings.ARQ_QUEUE_NAME)
    # No connection opened here: a worker started while Postgres restarts starts anyway, and
    # its statements connect once Postgres answers.
    db = ctx["db"] = await asyncpg.create_pool(
        settings.DATABASE_URL,
        min_size=0,
        max_size=settings.JOBS_DB_POOL_SIZE,
        reset=_keep_session,
        command_timeout=command_timeout,
    )
    locks = ctx["locks"] = LockSession(settings.DATABASE_URL, command_timeout=command_timeout)
    locks.start()

    async def can_progress() -> bool:
        return await can_take_turns(locks, db, PROBE_SECONDS)

    HealthGate(ctx["redis"], settings.ARQ_QUEUE_NAME, can_progress).install()
    metrics = ctx["metrics"] = worker_metrics()
    ctx["metrics_server"] = MetricsServer(metrics, ctx["redis"], settings)
    await ctx["metrics_server"].start()
    # One pooled client for WhatsApp sends and typing broadcasts: building a client is
    # expensive (its TLS context), so none is built per request.
    ctx["http"] = pooled_session(
        timeout=settings.WHATSAPP_SEND_TIMEOUT_SECONDS, max_connections=HTTP_CONNECTIONS
    )
    ctx["turn_deps"] = TurnDeps(
        settings=settings,
        db=db,
        locks=locks,
        engines=EngineRegistry(llm=llm_settings(settings)),
        whatsapp=WhatsAppClient(ctx["http"], SendPolicy.from_settings(settings)),
        typing=TypingBroadcaster(
            ctx["http"],
            settings.SUPABASE_URL,
            settings.SUPABASE_SERVICE_ROLE_KEY.get_secret_value(),
            ttl=timedelta(seconds=settings.JOBS_TYPING_TTL_SECONDS),
        ),
        jobs=ctx["queue"],
        holder=f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}",
        metrics=metrics,
    )
    listener = OutboxListener(settings.DATABASE_URL, ctx["queue"])
    # Before the first poll, so a worker in burst mode finds those jobs too (the listener
    # catches up again whenever it starts listening).
    try:
        await listener.catch_up(ctx["db"])
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        log.warning("jobs.startup.database_unavailable", extra={"detail": repr(exc)})
    ctx["outbox_listener"] = asyncio.get_running_loop().create_task(listener.run())
    gc_tuning.settle_after_startup()


async def shutdown(ctx: dict[str, Any]) -> None:
    deps: TurnDeps = ctx["turn_deps"]
    listening: asyncio.Task[None] | None = ctx.get("outbox_listener")
    if listening is not None:
        listening.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listening
    await ctx["metrics_server"].stop()
    await deps.engines.aclose()
    await ctx["http"].close()
    await deps.locks.close(POOL_CLOSE_SECONDS)
    await close_pool(ctx["db"])


async def close_pool(pool: asyncpg.Pool, within: float = POOL_CLOSE_SECONDS) -> None:
    """Close gracefully when the connections come back and the database answers in time;
    else drop them."""
    try:
        await asyncio.wait_for(pool.close(), within)
    except (TimeoutError, OSError, asyncpg.InterfaceError) as exc:
        log.warning("jobs.shutdown.pool_dropped", extra={"detail": repr(exc)})
        pool.terminate()


async def job_started(ctx: dict[str, Any]) -> None:
    """arq's on_job_start: the running job is set aside on the queue (`JobQueue.set_aside`).
    Failing to costs only arq's re-checks, so it never fails the job."""
    settings: Settings = ctx["settings"]
    queue: JobQueue = ctx["queue"]
    ctx["started_at"] = time.time()
    # Since the job was due: its score (enqueue time, plus a deferral or a retry's delay).
    ctx["metrics"].observe(
        "jobs_job_wait_seconds", max(0.0, ctx["started_at"] - ctx["score"] / 1000)
    )
    # arq's in-progress key lives for the job timeout + 10 s.
    in_progress_ms = (settings.JOBS_JOB_TIMEOUT_SECONDS + 10) * 1000
    try:
        await queue.set_aside(ctx["job_id"], for_ms=in_progress_ms)
    except (RedisError, OSError) as exc:
        log.info("jobs.queue.set_aside_failed", extra={"detail": repr(exc)})


async def job_ended(ctx: dict[str, Any]) -> None:
    """arq's on_job_end, before it finishes the job: the job gets its own score back."""
    queue: JobQueue = ctx["queue"]
    ctx["metrics"].observe("jobs_job_duration_seconds", time.time() - ctx["started_at"])
    try:
        await queue.put_back(ctx["job_id"], int(ctx["score"]))
    except (RedisError, OSError) as exc:
        # arq's finish still removes the job; a retry then runs without its delay.
        log.warning("jobs.queue.put_back_failed", extra={"detail": repr(exc)})


async def process_inbound(
    ctx: dict[str, Any],
    conversation_id: str,
    message_id: str | None = None,
    correlation_id: str | None = None,
) -> dict[str, Any]:
    logs.correlation_id.set(correlation_id or ctx.get("job_id"))
    deps: TurnDeps = ctx["turn_deps"]
    conversation = uuid.UUID(conversation_id)
    job_message = uuid.UUID(message_id) if message_id else None
    try:
        outcome = await run_conversation(deps, conversation, job_message_id=job_message)
    except FenceLost as exc:
        log.warning(
            "jobs.turn.fence_lost", extra={"conversation_id": conversation_id, "detail": str(exc)}
        )
        if exc.session_lost and int(ctx.get("job_try", 1)) < retry.MAX_TRIES:
            # This worker's lock session ended mid-turn (the database restarted, the connection
            # dropped): the turn is taken again, by whichever worker gets there first.
            raise Retry(defer=RECONNECT_PAUSE_SECONDS) from exc
        # Another worker owns the conversation now and will finish the turn (or, out of
        # tries, the sweeper rings its messages again).
        return {"fence_lost": True}
    except Exception as exc:
        job_try = int(ctx.get("job_try", 1))
        log.exception(
            "jobs.turn.failed", extra={"conversation_id": conversation_id, "job_try": job_try}
        )
        if job_try < retry.MAX_TRIES:
            raise Retry(
                defer=retry.turn_retry_delay(job_try, deps.settings.JOBS_RETRY_BACKOFF_SECONDS)
            ) from exc
        # Out of retries: no customer is left unanswered, a human takes over.
        outcome = await run_conversation(
            deps,
            conversation,
            job_message_id=job_message,
            handoff_reason=f"agent failed: {type(exc).__name__}: {exc}"[:500],
        )
    return outcome.__dict__


async def sweep(ctx: dict[str, Any]) -> int:
    settings: Settings = ctx["settings"]
    after = timedelta(seconds=settings.JOBS_SWEEP_AFTER_SECONDS)
    inbound = await sweeper.requeue_unprocessed(ctx["db"], ctx["queue"], older_than=after)
    stalled = await sweeper.requeue_stalled_outbox(
        ctx["db"], ctx["queue"], older_than=min(after, sweeper.STALLED_OUTBOX_AGE)
    )
    return inbound + stalled


async def close_idle_sessions(ctx: dict[str, Any]) -> int:
    settings: Settings = ctx["settings"]
    return await sweeper.close_idle_sessions(
        ctx["db"], idle_for=timedelta(hours=settings.JOBS_SESSION_IDLE_HOURS)
    )
