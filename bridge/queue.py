"""The job contract between the webhook and the worker: names, ids and how to enqueue.

Postgres holds the truth; a job is only a doorbell for a conversation with unprocessed inbound
messages. Job ids are deterministic per message, so a redelivered webhook never rings twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from arq import ArqRedis, create_pool
from arq.connections import RedisSettings
from arq.constants import (
    in_progress_key_prefix,
    job_key_prefix,
    result_key_prefix,
    retry_key_prefix,
)
from arq.jobs import serialize_job
from arq.utils import timestamp_ms
from redis.commands.core import AsyncScript

DEFAULT_QUEUE = "arq:queue"

# When a batch holds several messages of one conversation, the first one's job is due at once and
# the others' this much later: the first job's turn drains them all and withdraws their jobs
# (`Withdrawer`) before they are due, instead of a worker claiming them meanwhile only to find
# the lock busy. They stay as the backstop if that turn never starts.
FOLLOW_UP_DELAY_MS = 500


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


# arq's own enqueue (WATCH, EXISTS, MULTI, PSETEX, ZADD, EXEC) takes four round trips per job.
# This script does the same check-and-set for a whole batch in one: a job whose key or result
# still exists is skipped (what makes the job id a dedupe key), any other is stored and queued as
# arq stores a job deferred by `delay`: due at now + delay, expiring a day (arq's
# `expires_extra_ms`) after that. KEYS: the queue, then each job's key and result key; ARGV: now
# (ms), the expiry (ms), then each job's id, serialised payload and delay (ms).
_ENQUEUE_BATCH = """
local now, expiry = tonumber(ARGV[1]), tonumber(ARGV[2])
local queued = 0
for i = 1, (#KEYS - 1) / 2 do
  local job_key, result_key = KEYS[2 * i], KEYS[2 * i + 1]
  local delay = tonumber(ARGV[3 * i + 2])
  if redis.call('EXISTS', job_key, result_key) == 0 then
    redis.call('PSETEX', job_key, expiry + delay, ARGV[3 * i + 1])
    redis.call('ZADD', KEYS[1], now + delay, ARGV[3 * i])
    queued = queued + 1
  end
end
return queued
"""


# A turn drains every unprocessed message of its conversation, so the jobs of the other messages
# it answered would only take the lock to find nothing to do: seven round trips each (arq's
# claim, read and finish, the lock attempt). This script takes such jobs off the queue, unless a
# worker has already claimed one (its in-progress key exists; it then runs, finds nothing and
# ends). KEYS: the queue, then each job's in-progress, job and retry keys; ARGV: the job ids.
_WITHDRAW_BATCH = """
local withdrawn = 0
for i = 1, #ARGV do
  local in_progress, job_key, retry_key = KEYS[3 * i - 1], KEYS[3 * i], KEYS[3 * i + 1]
  if redis.call('EXISTS', in_progress) == 0 and redis.call('ZREM', KEYS[1], ARGV[i]) == 1 then
    redis.call('DEL', job_key, retry_key)
    withdrawn = withdrawn + 1
  end
end
return withdrawn
"""


class Withdrawer:
    """Takes the wake-up jobs of messages a turn has answered off the queue (`_WITHDRAW_BATCH`)."""

    def __init__(self, redis: ArqRedis, queue_name: str) -> None:
        self._queue_name = queue_name
        self._script = redis.register_script(_WITHDRAW_BATCH)

    async def withdraw_inbound(self, message_ids: Sequence[str]) -> int:
        """How many queued jobs were withdrawn; a job already running is left to finish."""
        if not message_ids:
            return 0
        keys = [self._queue_name]
        args = []
        for message_id in message_ids:
            job_id = inbound_job_id(message_id)
            keys += [
                in_progress_key_prefix + job_id,
                job_key_prefix + job_id,
                retry_key_prefix + job_id,
            ]
            args.append(job_id)
        return int(await self._script(keys=keys, args=args))


@dataclass(frozen=True)
class InboundJob:
    """One new inbound message to ring the worker for, with the request that stored it."""

    conversation_id: str
    message_id: str
    correlation_id: str | None


class Enqueuer:
    """A lazily (re)connected arq pool; a failed connection is retried on the next call."""

    def __init__(self, redis_url: str, queue_name: str = DEFAULT_QUEUE) -> None:
        self._settings = redis_settings(redis_url, quick=True)
        self._queue_name = queue_name
        self._pool: ArqRedis | None = None
        self._script: AsyncScript | None = None

    async def _redis(self) -> tuple[ArqRedis, AsyncScript]:
        if self._pool is None or self._script is None:
            self._pool = await create_pool(self._settings, default_queue_name=self._queue_name)
            self._script = self._pool.register_script(_ENQUEUE_BATCH)
        return self._pool, self._script

    async def enqueue_inbound(self, jobs: Sequence[InboundJob]) -> int:
        """Enqueue one `process_inbound` job per message, as arq's `enqueue_job` would, in one
        round trip; returns how many were newly queued (the others exist already). A message
        whose conversation has an earlier one in the batch is due `FOLLOW_UP_DELAY_MS` later."""
        if not jobs:
            return 0
        redis, script = await self._redis()
        now_ms = timestamp_ms()
        keys: list[str] = [self._queue_name]
        args: list[str | bytes | int] = [now_ms, redis.expires_extra_ms]
        rung: set[str] = set()
        for job in jobs:
            job_id = inbound_job_id(job.message_id)
            keys += [job_key_prefix + job_id, result_key_prefix + job_id]
            kwargs = {
                "conversation_id": job.conversation_id,
                "message_id": job.message_id,
                "correlation_id": job.correlation_id,
            }
            payload = serialize_job(
                JobName.PROCESS_INBOUND.value,
                (),
                kwargs,
                None,
                now_ms,
                serializer=redis.job_serializer,
            )
            follow_up = job.conversation_id in rung
            rung.add(job.conversation_id)
            args += [job_id, payload, FOLLOW_UP_DELAY_MS if follow_up else 0]
        try:
            return int(await script(keys=keys, args=args))
        except Exception:
            await self.close()  # reconnect next time
            raise

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool, self._script = self._pool, None, None
            await pool.aclose()
