"""The job contract between the webhook and the worker: names, ids and how to enqueue.

Postgres holds the truth; a job is only a doorbell for a conversation with unprocessed inbound
messages. Job ids are deterministic per message, so a redelivered webhook never rings twice.
"""

from __future__ import annotations

import logging
from enum import StrEnum
from typing import Any

from arq import ArqRedis, create_pool
from arq.connections import RedisSettings

log = logging.getLogger(__name__)

DEFAULT_QUEUE = "arq:queue"


class JobName(StrEnum):
    PROCESS_INBOUND = "process_inbound"


def inbound_job_id(message_id: str) -> str:
    return f"inbound:{message_id}"


def redis_settings(redis_url: str, *, quick: bool = False) -> RedisSettings:
    settings = RedisSettings.from_dsn(redis_url)
    if quick:
        # The webhook must never wait on a Redis that is away: fail fast, the sweeper recovers.
        settings.conn_timeout = 1
        settings.conn_retries = 0
    return settings


class Enqueuer:
    """A lazily (re)connected arq pool; a failed connection is retried on the next call."""

    def __init__(self, redis_url: str, queue_name: str = DEFAULT_QUEUE) -> None:
        self._settings = redis_settings(redis_url, quick=True)
        self._queue_name = queue_name
        self._pool: ArqRedis | None = None

    async def _redis(self) -> ArqRedis:
        if self._pool is None:
            self._pool = await create_pool(self._settings, default_queue_name=self._queue_name)
        return self._pool

    async def enqueue_inbound(
        self, new_inbound: list[dict[str, Any]], correlation_id: str | None
    ) -> int:
        """Enqueue one job per new inbound message; returns how many were newly queued."""
        redis = await self._redis()
        queued = 0
        try:
            for msg in new_inbound:
                job = await redis.enqueue_job(
                    JobName.PROCESS_INBOUND.value,
                    conversation_id=msg["conversation_id"],
                    message_id=msg["message_id"],
                    correlation_id=correlation_id,
                    _job_id=inbound_job_id(msg["message_id"]),
                )
                queued += job is not None
        except Exception:
            await self.close()  # reconnect next time
            raise
        return queued

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.aclose()
