"""The worker's functions: start-up and shutdown (what jobs share), the turn job, and the crons.

Start-up builds a Postgres pool for data, a pool of dedicated connections that hold the
per-conversation advisory locks (DATABASE_URL must be a direct or session-mode connection), the
engines, the WhatsApp client, the typing broadcaster and the job queue, and gates arq's health
record on the lock pool's progress (`jobs.health`). Shutdown waits a bounded time for each pool
and then drops its connections, so SIGTERM ends the process even when the database does not
answer. Crons: the sweeper (inbound messages without a job, outbox rows a dead worker left
behind) and idle sessions. `jobs.worker.WorkerSettings` hands them to arq with the process's
settings in `ctx`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from datetime import timedelta
from typing import Any

import asyncpg
from arq import Retry

from bridge import gc_tuning, logs
from bridge.http_pool import pooled_session
from bridge.queue import JobQueue
from bridge.settings import Settings
from jobs import retry, sweeper
from jobs.engine.claude import ClaudeSettings
from jobs.engine.registry import EngineRegistry
from jobs.health import PROBE_SECONDS, HealthGate
from jobs.lock import FenceLost, pool_can_lock
from jobs.turn import TurnDeps, run_conversation
from jobs.typing_broadcast import TypingBroadcaster
from jobs.whatsapp_api import SendPolicy, WhatsAppClient

log = logging.getLogger(__name__)

# How long shutdown waits for a pool to close gracefully before dropping its connections.
POOL_CLOSE_SECONDS = 2.0


def statement_seconds(job_timeout: float) -> float:
    """The longest a statement of the worker may run, and a cancelled one may take to be
    acknowledged (asyncpg bounds both by the connection's command timeout): a database that
    stopped answering fails the statement, whose turn is retried, instead of holding a job and
    its connection forever. A quarter of the job timeout, so a cancelled job (job timeout,
    SIGTERM) lets go of its connections well within it."""
    return min(60.0, max(5.0, job_timeout / 4))


async def _keep_session(conn: asyncpg.Connection) -> None:
    """No reset round trip (advisory unlock, CLOSE ALL, UNLISTEN, RESET ALL) when a connection
    goes back to a pool: the jobs keep no session state, and a lock's connection is closed
    instead of returned unless its unlock surely ran (`jobs.lock`)."""


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


async def startup(ctx: dict[str, Any]) -> None:
    settings: Settings = ctx["settings"]
    command_timeout = statement_seconds(settings.JOBS_JOB_TIMEOUT_SECONDS)
    logs.configure(settings.BRIDGE_LOG_LEVEL)
    ctx["queue"] = JobQueue(ctx["redis"], settings.ARQ_QUEUE_NAME)
    ctx["db"] = await asyncpg.create_pool(
        settings.DATABASE_URL,
        min_size=1,
        max_size=5,
        reset=_keep_session,
        command_timeout=command_timeout,
    )
    lock_pool = ctx["lock_pool"] = await asyncpg.create_pool(
        settings.DATABASE_URL,
        min_size=1,
        max_size=settings.JOBS_MAX_JOBS + 2,
        reset=_keep_session,
        command_timeout=command_timeout,
    )

    async def can_progress() -> bool:
        return await pool_can_lock(lock_pool, PROBE_SECONDS)

    HealthGate(ctx["redis"], settings.ARQ_QUEUE_NAME, can_progress).install()
    # One pooled client for WhatsApp sends and typing broadcasts: building a client is
    # expensive (its TLS context), so none is built per request.
    ctx["http"] = pooled_session(
        timeout=settings.WHATSAPP_SEND_TIMEOUT_SECONDS, max_connections=settings.JOBS_MAX_JOBS * 2
    )
    ctx["turn_deps"] = TurnDeps(
        settings=settings,
        db=ctx["db"],
        lock_pool=ctx["lock_pool"],
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
    )
    gc_tuning.settle_after_startup()


async def shutdown(ctx: dict[str, Any]) -> None:
    deps: TurnDeps = ctx["turn_deps"]
    await deps.engines.aclose()
    await ctx["http"].close()
    await close_pool(ctx["lock_pool"])
    await close_pool(ctx["db"])


async def close_pool(pool: asyncpg.Pool, within: float = POOL_CLOSE_SECONDS) -> None:
    """Close gracefully when the connections come back and the database answers in time;
    else drop them (a dropped lock connection frees its locks)."""
    try:
        await asyncio.wait_for(pool.close(), within)
    except (TimeoutError, OSError, asyncpg.InterfaceError) as exc:
        log.warning("jobs.shutdown.pool_dropped", extra={"detail": repr(exc)})
        pool.terminate()


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
        # Another worker owns the conversation now and will finish the turn.
        log.warning(
            "jobs.turn.fence_lost", extra={"conversation_id": conversation_id, "detail": str(exc)}
        )
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
    stalled = await sweeper.requeue_stalled_outbox(ctx["db"], ctx["queue"], older_than=after * 4)
    return inbound + stalled


async def close_idle_sessions(ctx: dict[str, Any]) -> int:
    settings: Settings = ctx["settings"]
    return await sweeper.close_idle_sessions(
        ctx["db"], idle_for=timedelta(hours=settings.JOBS_SESSION_IDLE_HOURS)
    )
