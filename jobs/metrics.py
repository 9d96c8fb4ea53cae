"""The worker's metrics and its /metrics endpoint (docs/operations.md#metrics).

Counted where things happen (`jobs.turn`, `jobs.tasks`' job hooks); the queue's size is read from
Redis when Prometheus scrapes. The endpoint is an aiohttp server in the worker's own event loop on
`JOBS_METRICS_PORT` (0: none), asking for `BRIDGE_METRICS_TOKEN` as a bearer token when that is
set, like the API's. A port already taken costs the metrics, never the worker.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from typing import Literal, get_args

from aiohttp import web
from arq.connections import ArqRedis
from redis.exceptions import RedisError

from bridge.metrics import CONTENT_TYPE, Declared, Metrics
from bridge.settings import Settings

log = logging.getLogger(__name__)

# Why a conversation went to a human (`jobs.turn.ConversationTurn._hand_off`).
HandoffReason = Literal[
    "engine_request",  # the engine asked for a human
    "agent_failed",  # the turn kept failing: retries ran out
    "engine_misconfigured",  # the workspace's engine is unknown or misconfigured
    "reply_not_delivered",  # a bot reply failed or its fate is unknown
    "send_interrupted",  # a worker died while sending: a human checks
]
SEND_OUTCOMES = ("sent", "skipped", "failed", "unknown")
# A turn waits for the engine (an LLM: seconds) and for its replies' delays.
TURN_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
JOB_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
# How long a scrape waits for Redis to count the queue.
QUEUE_READ_SECONDS = 1.0
# Where the endpoint listens: every interface, for a scraper in another container or host.
HOST = "0.0.0.0"

WORKER_METRICS: dict[str, Declared] = {
    "jobs_turns_total": Declared("counter", "Turns the engine answered (typing START to STOP)."),
    "jobs_turn_duration_seconds": Declared(
        "histogram",
        "A turn's time from typing START to STOP: the engine, the commit and the sends with "
        "their delays.",
        buckets=TURN_BUCKETS,
    ),
    "jobs_sends_total": Declared(
        "counter",
        "Outbox rows by outcome: sent, skipped (not to go out any more), failed, unknown "
        "(a timeout or 5xx: never re-sent).",
        labels=("outcome",),
        values=SEND_OUTCOMES,
    ),
    "jobs_handoffs_total": Declared(
        "counter",
        "Conversations handed to a human, by reason.",
        labels=("reason",),
        values=get_args(HandoffReason),
    ),
    "jobs_lock_busy_total": Declared(
        "counter",
        "Takes of a conversation that found it busy (another job holds it) or already drained "
        "by the holder: the job exits, the holder answers its message.",
    ),
    "jobs_queue_depth": Declared(
        "gauge", "Jobs in the arq queue (ZCARD): due, deferred and running ones."
    ),
    "jobs_queue_due": Declared(
        "gauge", "Jobs in the arq queue due now and not yet started by any worker."
    ),
    "jobs_job_wait_seconds": Declared(
        "histogram",
        "Time from a job being due (enqueued, or its retry's delay over) to a worker starting it.",
        buckets=JOB_BUCKETS,
    ),
    "jobs_job_duration_seconds": Declared(
        "histogram", "Time a job ran (turn jobs and crons).", buckets=TURN_BUCKETS
    ),
}


def worker_metrics() -> Metrics:
    return Metrics(WORKER_METRICS)


class MetricsServer:
    """`GET /metrics` of the worker, served from its event loop."""

    def __init__(self, metrics: Metrics, redis: ArqRedis, settings: Settings) -> None:
        self._metrics = metrics
        self._redis = redis
        self._queue_name = settings.ARQ_QUEUE_NAME
        self._port = settings.JOBS_METRICS_PORT
        token = settings.BRIDGE_METRICS_TOKEN
        self._authorization = (
            f"Bearer {token.get_secret_value()}".encode() if token is not None else None
        )
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        if not self._port:
            return
        app = web.Application()
        app.router.add_get("/metrics", self._serve)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        try:
            await web.TCPSite(runner, HOST, self._port).start()
        except OSError as exc:
            await runner.cleanup()
            log.error("jobs.metrics.unavailable", extra={"port": self._port, "detail": repr(exc)})
            return
        self._runner = runner

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def _serve(self, request: web.Request) -> web.Response:
        if self._authorization is not None:
            given = request.headers.get("authorization", "").encode("latin-1")
            if not hmac.compare_digest(given, self._authorization):
                return web.json_response(
                    {"error": "unauthorized"}, status=401, headers={"WWW-Authenticate": "Bearer"}
                )
        await self._read_queue()
        return web.Response(body=self._metrics.render(), headers={"Content-Type": CONTENT_TYPE})

    async def _read_queue(self) -> None:
        """The queue's size now; left as last read when Redis does not answer in time."""
        now_ms = int(time.time() * 1000)
        try:
            async with asyncio.timeout(QUEUE_READ_SECONDS):
                async with self._redis.pipeline(transaction=False) as pipe:
                    pipe.zcard(self._queue_name)
                    pipe.zcount(self._queue_name, "-inf", now_ms)
                    depth, due = await pipe.execute()
        except (RedisError, OSError, TimeoutError) as exc:
            log.info("jobs.metrics.queue_unread", extra={"detail": repr(exc)})
            return
        self._metrics.set("jobs_queue_depth", depth)
        self._metrics.set("jobs_queue_due", due)
