"""The job contract between the webhook and the worker: the job's name, ids and arguments, and
the only ways jobs are put on or taken off the queue (enqueue, withdraw, set aside while running),
for the webhook's doorbell, the worker's sweeper and the turn alike.

Postgres holds the truth; a job is only a doorbell for a conversation with unprocessed inbound
messages. Job ids are deterministic per message, so a redelivered webhook never rings twice.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

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

# When a batch holds several messages of one conversation, the first one's job is due at once and
# the others' this much later: the first job's turn drains them all and withdraws their jobs
# (`JobQueue.withdraw_inbound`) before they are due, instead of a worker claiming them meanwhile
# only to find the lock busy. They stay as the backstop if that turn never starts.
FOLLOW_UP_DELAY_MS = 500


class JobName(StrEnum):
    PROCESS_INBOUND = "process_inbound"


# A re-sweep of the same message gets a fresh job id once per bucket, so a sweep job that already
# ran (its result key blocks the id) does not stop a later sweep from trying again.
SWEEP_BUCKET_SECONDS = 60


def inbound_job_id(message_id: str) -> str:
    return f"inbound:{message_id}"


def sweep_job_id(key: str, now: float | None = None) -> str:
    """The sweeper's id for a message (or `outbox:<conversation id>`) left without a job."""
    bucket = int((now if now is not None else time.time()) // SWEEP_BUCKET_SECONDS)
    return f"sweep:{key}:{bucket}"


@dataclass(frozen=True)
class TurnJob:
    """One `process_inbound` job: a doorbell for a conversation, with the message it rings for
    (None when it resumes an outbox) and the request that stored it. Its fields are the job
    function's keyword arguments (`jobs.worker.process_inbound`)."""

    conversation_id: str
    message_id: str | None
    correlation_id: str | None
    job_id: str

    @classmethod
    def for_message(
        cls, conversation_id: str, message_id: str, correlation_id: str | None
    ) -> TurnJob:
        return cls(conversation_id, message_id, correlation_id, inbound_job_id(message_id))

    def kwargs(self) -> dict[str, Any]:
        return {
            "conversation_id": self.conversation_id,
            "message_id": self.message_id,
            "correlation_id": self.correlation_id,
        }


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


class JobQueue:
    """arq's queue as the bridge uses it, on a connected arq pool."""

    def __init__(self, redis: ArqRedis, queue_name: str) -> None:
        self._redis = redis
        self._queue_name = queue_name
        self._enqueue = redis.register_script(_ENQUEUE_BATCH)
        self._withdraw = redis.register_script(_WITHDRAW_BATCH)

    async def enqueue(self, jobs: Sequence[TurnJob]) -> int:
        """Enqueue the jobs as arq's `enqueue_job` would, in one round trip; returns how many
        were newly queued (the others exist already). A job whose conversation has an earlier
        one in the batch is due `FOLLOW_UP_DELAY_MS` later."""
        if not jobs:
            return 0
        now_ms = timestamp_ms()
        keys: list[str] = [self._queue_name]
        args: list[str | bytes | int] = [now_ms, self._redis.expires_extra_ms]
        rung: set[str] = set()
        for job in jobs:
            keys += [job_key_prefix + job.job_id, result_key_prefix + job.job_id]
            payload = serialize_job(
                JobName.PROCESS_INBOUND.value,
                (),
                job.kwargs(),
                None,
                now_ms,
                serializer=self._redis.job_serializer,
            )
            follow_up = job.conversation_id in rung
            rung.add(job.conversation_id)
            args += [job.job_id, payload, FOLLOW_UP_DELAY_MS if follow_up else 0]
        return int(await self._enqueue(keys=keys, args=args))

    async def set_aside(self, job_id: str, *, for_ms: int) -> None:
        """Make a job this worker has started due only `for_ms` from now (arq's in-progress
        expiry): arq's poll re-checks every due id of the queue, three round trips each, even
        the ones running, so hundreds of turns waiting on an LLM or a reply's delay would cost a
        worker more than their work. A worker killed meanwhile leaves the job due when its
        in-progress key expires, so another worker runs it again as arq would."""
        await self._redis.zadd(self._queue_name, {job_id: timestamp_ms() + for_ms}, xx=True)

    async def put_back(self, job_id: str, score: int) -> None:
        """Give a job ending now its own score again, before arq finishes it: arq then removes
        it, or retries it after its delay, or (cancelled by a shutdown) runs it again, each from
        the score it expects."""
        await self._redis.zadd(self._queue_name, {job_id: score}, xx=True)

    async def withdraw_inbound(self, message_ids: Sequence[str]) -> int:
        """Take the queued jobs of these messages off the queue (`_WITHDRAW_BATCH`); a job
        already running is left to finish. Returns how many were withdrawn."""
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
        return int(await self._withdraw(keys=keys, args=args))


class Enqueuer:
    """The webhook's side of the queue: a lazily (re)connected arq pool that fails fast; a
    failed connection is retried on the next call."""

    def __init__(self, redis_url: str, queue_name: str) -> None:
        self._settings = redis_settings(redis_url, quick=True)
        self._queue_name = queue_name
        self._pool: ArqRedis | None = None
        self._queue: JobQueue | None = None

    async def enqueue(self, jobs: Sequence[TurnJob]) -> int:
        if not jobs:
            return 0
        if self._queue is None:
            self._pool = await create_pool(self._settings, default_queue_name=self._queue_name)
            self._queue = JobQueue(self._pool, self._queue_name)
        try:
            return await self._queue.enqueue(jobs)
        except Exception:
            await self.close()  # reconnect next time
            raise

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool, self._queue = self._pool, None, None
            await pool.aclose()
