"""The worker's doorbell: after a webhook's batch is committed, its new inbound messages are
enqueued as arq jobs by one background task of the API process.

The task sends whatever has gathered since its last round trip in one enqueue, so a burst of
webhooks costs a few Redis round trips instead of a task and arq's several round trips per
message, and a slow or absent Redis holds back nothing but this bounded queue. Whatever is not enqueued (Redis
down, the queue full, the process gone) is still in Postgres, unprocessed: the worker's sweeper
enqueues it a few seconds later. So ringing never fails and never waits.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Iterable

from bridge.metrics import Metrics
from bridge.queue import Enqueuer, TurnJob

log = logging.getLogger(__name__)

# Pending jobs kept while Redis is slow; past this the oldest wait for the sweeper instead.
MAX_PENDING = 20_000
# Jobs per enqueue round trip.
MAX_BATCH = 500
# How long a shutting-down API keeps trying to send what is pending.
CLOSE_GRACE_SECONDS = 2.0


class Doorbell:
    def __init__(
        self,
        enqueuer: Enqueuer,
        metrics: Metrics,
        *,
        max_pending: int = MAX_PENDING,
        max_batch: int = MAX_BATCH,
    ) -> None:
        self._enqueuer = enqueuer
        self._metrics = metrics
        self._max_batch = max_batch
        self._pending: collections.deque[TurnJob] = collections.deque(maxlen=max_pending)
        self._rung = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="bridge-doorbell")

    def ring(self, jobs: Iterable[TurnJob]) -> None:
        """Queue jobs for the next round trip; returns at once."""
        for job in jobs:
            if len(self._pending) == self._pending.maxlen:
                # The deque drops the oldest: that message is left to the sweeper.
                self._metrics.inc("bridge_enqueue_dropped_total")
            self._pending.append(job)
        if self._pending:
            self._idle.clear()
            self._rung.set()

    async def drained(self) -> None:
        """Returns once every job rung so far has been enqueued or given up on."""
        await self._idle.wait()

    async def close(self) -> None:
        """Send what is pending (for at most CLOSE_GRACE_SECONDS), then stop and disconnect."""
        if self._task is None:
            await self._enqueuer.close()
            return
        try:
            async with asyncio.timeout(CLOSE_GRACE_SECONDS):
                await self.drained()
        except TimeoutError:
            log.warning(
                "bridge.api.doorbell.unsent",
                extra={"messages": len(self._pending), "detail": "left to the sweeper"},
            )
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass
        self._task = None
        await self._enqueuer.close()

    async def _run(self) -> None:
        while True:
            await self._rung.wait()
            self._rung.clear()
            while self._pending:
                batch = [
                    self._pending.popleft() for _ in range(min(self._max_batch, len(self._pending)))
                ]
                await self._send(batch)
            self._idle.set()

    async def _send(self, batch: list[TurnJob]) -> None:
        try:
            queued = await self._enqueuer.enqueue(batch)
        except Exception as exc:
            self._metrics.inc("bridge_enqueue_failed_total", len(batch))
            log.warning(
                "bridge.enqueue.failed",
                extra={
                    "correlation_ids": sorted({j.correlation_id or "" for j in batch}),
                    "detail": f"{type(exc).__name__}: {exc}",
                    "messages": len(batch),
                },
            )
            return
        self._metrics.inc("bridge_jobs_enqueued_total", queued)
