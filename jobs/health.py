"""What `arq --check` answers: healthy only while the worker can make progress.

arq's heart beat writes a health record (a Redis key that expires after
`health_check_interval` + 1 s) from its poll loop, whatever its jobs are doing, and `arq --check`
only asks whether the key exists. A worker whose lock session or pool is stuck, or whose
database stopped answering, would still look healthy. The record is written through the
worker's own Redis client, so the write is gated here: it goes through only when the worker
can take a turn now (`jobs.lock.can_take_turns`); otherwise the record is deleted at once and
the check fails until a probe succeeds again.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from arq.connections import ArqRedis
from arq.constants import health_check_key_suffix

log = logging.getLogger(__name__)

# How long the probe may wait for the lock session, a pooled connection and the database. It runs on
# arq's poll loop once per health interval, so it delays picking jobs only while unhealthy.
PROBE_SECONDS = 2.0


def health_key(queue_name: str) -> str:
    """The key arq writes and `arq --check` reads for a queue (WorkerSettings sets no other)."""
    return queue_name + health_check_key_suffix


class HealthGate:
    """Lets arq's health record through only while `probe` says the worker can make progress."""

    def __init__(
        self, redis: ArqRedis, queue_name: str, probe: Callable[[], Awaitable[bool]]
    ) -> None:
        self._redis = redis
        self._key = health_key(queue_name)
        self._probe = probe
        self._write = redis.psetex
        self.healthy = True

    def install(self) -> None:
        # arq's Worker writes the record with `self.pool.psetex`, the client it also hands to
        # the jobs as ctx["redis"]: this instance's method is the one seam arq leaves.
        setattr(self._redis, "psetex", self._psetex)  # noqa: B010

    async def _psetex(self, name: Any, time_ms: Any, value: Any) -> Any:
        if name == self._key:
            healthy = await self._probe()
            if healthy != self.healthy:
                self.healthy = healthy
                if healthy:
                    log.info("jobs.health.progress")
                else:
                    log.error(
                        "jobs.health.stalled",
                        extra={"detail": "the lock session or the pool cannot serve a turn"},
                    )
            if not healthy:
                await self._redis.delete(name)
                return False
        return await self._write(name, time_ms, value)
