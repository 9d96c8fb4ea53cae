"""`arq jobs.worker.WorkerSettings`: the worker process.

arq reads its configuration from this class at import time, so the settings (environment and
`.env`) are read here once and reach the functions of `jobs.tasks` through `ctx`. The process
outlives Redis restarts: its Redis client waits for Redis while the worker runs
(`jobs.redis_connection`).
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

import uvloop
from arq import cron, func
from arq.connections import RedisSettings

from bridge.queue import JobName
from bridge.settings import Settings
from jobs import retry, tasks
from jobs.redis_connection import OutageRetry, worker_redis_settings
from jobs.tasks import (
    close_idle_sessions,
    job_ended,
    job_started,
    process_inbound,
    shutdown,
    sweep,
)

_settings = Settings()
_redis_retry = OutageRetry()

# arq builds its event loop from the policy after importing this module: make it uvloop's, which
# roughly halves the loop's own cost per request (the API gets it from uvicorn[standard]).
asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


async def startup(ctx: dict[str, Any]) -> None:
    # arq awaits on_startup inside its main task: Redis is waited for while that task runs.
    _redis_retry.attach()
    await tasks.startup(ctx)


class WorkerSettings:
    # Also what `arq --check` connects with: outside the main task a command gives up quickly.
    redis_settings: ClassVar[RedisSettings] = worker_redis_settings(
        _settings.REDIS_URL, _redis_retry
    )
    queue_name: ClassVar[str] = _settings.ARQ_QUEUE_NAME
    ctx: ClassVar[dict[str, Any]] = {"settings": _settings}
    on_startup = startup
    on_shutdown = shutdown
    # A running job is set aside on the queue and put back before arq finishes it
    # (`bridge.queue.JobQueue.set_aside`).
    on_job_start = job_started
    on_job_end = job_ended
    functions: ClassVar[list[Any]] = [
        func(process_inbound, name=JobName.PROCESS_INBOUND.value, max_tries=retry.MAX_TRIES)
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
    # Short enough for `arq --check` as a liveness probe. The record is written only while the
    # worker can take a turn (`jobs.health`): a stalled worker fails the check within
    # this interval + 1 s. SIGTERM cancels the jobs at once (no completion wait): their
    # connections are bounded by `jobs.tasks.statement_seconds` and the pools by
    # `jobs.tasks.close_pool`, so the process ends well within the job timeout.
    health_check_interval = 10
