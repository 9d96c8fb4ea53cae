"""`arq jobs.worker.WorkerSettings`: the worker process.

Startup builds what jobs share: settings, a Postgres pool for data, a pool of dedicated
connections that hold the per-conversation advisory locks (DATABASE_URL must be a direct or
session-mode connection), the WhatsApp client and the typing broadcaster. Crons: the sweeper
(inbound messages without a job, outbox rows a dead worker left behind) and idle sessions.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from datetime import timedelta
from typing import Any, ClassVar

import asyncpg
import uvloop
from arq import Retry, cron, func
from arq.connections import RedisSettings

from bridge import gc_tuning, logs
from bridge.http_pool import pooled_session
from bridge.queue import JobName, Withdrawer
from bridge.settings import Settings
from jobs import sweeper
from jobs.lock import FenceLost
from jobs.turn import TurnDeps, retry_delay, run_conversation
from jobs.typing_broadcast import TypingBroadcaster
from jobs.whatsapp_api import WhatsAppClient

log = logging.getLogger(__name__)

# arq reads its settings from class attributes at import time, so the environment is read here.
_settings = Settings()

# arq builds its event loop from the policy after importing this module: make it uvloop's, which
# roughly halves the loop's own cost per request (the API gets it from uvicorn[standard]).
asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())

# The seed's "2 retries": a third failure hands the conversation to a human.
MAX_TRIES = 3


async def _keep_session(conn: asyncpg.Connection) -> None:
    """No reset round trip (advisory unlock, CLOSE ALL, UNLISTEN, RESET ALL) when a connection
    goes back to a pool: the jobs keep no session state, and a lock's connection is closed
    instead of returned unless its unlock surely ran (`jobs.lock`)."""


async def startup(ctx: dict[str, Any]) -> None:
    settings = _settings
    logs.configure(settings.BRIDGE_LOG_LEVEL)
    ctx["settings"] = settings
    ctx["db"] = await asyncpg.create_pool(
        settings.DATABASE_URL, min_size=1, max_size=5, reset=_keep_session
    )
    ctx["lock_pool"] = await asyncpg.create_pool(
        settings.DATABASE_URL,
        min_size=1,
        max_size=settings.JOBS_MAX_JOBS + 2,
        reset=_keep_session,
    )
    # One pooled client for WhatsApp sends and typing broadcasts: building a client is
    # expensive (its TLS context), so none is built per request.
    ctx["http"] = pooled_session(
        timeout=settings.WHATSAPP_SEND_TIMEOUT_SECONDS, max_connections=settings.JOBS_MAX_JOBS * 2
    )
    ctx["turn_deps"] = TurnDeps(
        settings=settings,
        db=ctx["db"],
        lock_pool=ctx["lock_pool"],
        whatsapp=WhatsAppClient(ctx["http"]),
        typing=TypingBroadcaster(
            ctx["http"],
            settings.SUPABASE_URL,
            settings.SUPABASE_SERVICE_ROLE_KEY.get_secret_value(),
            ttl=timedelta(seconds=settings.JOBS_TYPING_TTL_SECONDS),
        ),
        jobs=Withdrawer(ctx["redis"], settings.ARQ_QUEUE_NAME),
        holder=f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}",
    )
    gc_tuning.settle_after_startup()


async def shutdown(ctx: dict[str, Any]) -> None:
    await ctx["http"].close()
    await ctx["lock_pool"].close()
    await ctx["db"].close()


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
        if job_try < MAX_TRIES:
            raise Retry(
                defer=retry_delay(job_try, deps.settings.JOBS_RETRY_BACKOFF_SECONDS)
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
    inbound = await sweeper.requeue_unprocessed(ctx["db"], ctx["redis"], older_than=after)
    stalled = await sweeper.requeue_stalled_outbox(ctx["db"], ctx["redis"], older_than=after * 4)
    return inbound + stalled


async def close_idle_sessions(ctx: dict[str, Any]) -> int:
    settings: Settings = ctx["settings"]
    return await sweeper.close_idle_sessions(
        ctx["db"], idle_for=timedelta(hours=settings.JOBS_SESSION_IDLE_HOURS)
    )


class WorkerSettings:
    redis_settings: ClassVar[RedisSettings] = RedisSettings.from_dsn(_settings.REDIS_URL)
    queue_name: ClassVar[str] = _settings.ARQ_QUEUE_NAME
    on_startup = startup
    on_shutdown = shutdown
    functions: ClassVar[list[Any]] = [
        func(process_inbound, name=JobName.PROCESS_INBOUND.value, max_tries=MAX_TRIES)
    ]
    # No per-cron timeout: arq keeps a killed job "in progress" for the longest function timeout
    # + 10 s before re-running it, so a long cron timeout would delay crash recovery.
    cron_jobs: ClassVar[list[Any]] = [
        cron(sweep, second={0, 10, 20, 30, 40, 50}, run_at_startup=True),
        cron(close_idle_sessions, minute={0, 15, 30, 45}),
    ]
    max_jobs = _settings.JOBS_MAX_JOBS
    poll_delay = _settings.JOBS_POLL_DELAY_SECONDS
    job_timeout = _settings.JOBS_JOB_TIMEOUT_SECONDS
    # A result kept for an hour would block re-enqueueing the same job id (a lost wake-up);
    # Postgres, not Redis, records what was done.
    keep_result = 0
    # Short enough for `arq --check` as a liveness probe.
    health_check_interval = 10
