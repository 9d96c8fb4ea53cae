"""The doorbell against real Redis: jobs as arq's own enqueue writes them, once per message,
and a Redis that is away costs a count and a log line, never an exception."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator

import pytest
from arq.constants import result_key_prefix
from arq.jobs import deserialize_job_raw
from redis.asyncio import Redis

from bridge.api.doorbell import Doorbell
from bridge.metrics import Metrics
from bridge.queue import Enqueuer, JobName, TurnJob
from tests.fixtures.devstack import free_port


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
def own_queue() -> str:
    return f"arq:queue:test-doorbell-{uuid.uuid4().hex[:8]}"


def _jobs(n: int) -> list[TurnJob]:
    """Jobs of as many conversations (a conversation's follow-ups are due later: test_queue)."""
    return [TurnJob.for_message(str(uuid.uuid4()), str(uuid.uuid4()), f"cid-{i}") for i in range(n)]


async def _started(redis_url: str, queue: str, metrics: Metrics, **kw: int) -> Doorbell:
    bell = Doorbell(Enqueuer(redis_url, queue), metrics, **kw)
    bell.start()
    return bell


async def test_rung_jobs_are_stored_as_arq_enqueues_them(
    redis: Redis, redis_url: str, own_queue: str
) -> None:
    metrics = Metrics()
    bell = await _started(redis_url, own_queue, metrics)
    jobs = _jobs(3)
    before_ms = int(time.time() * 1000)
    try:
        bell.ring(jobs)
        await bell.drained()
    finally:
        await bell.close()
    queued = await redis.zrange(own_queue, 0, -1, withscores=True)
    assert sorted(m.decode() for m, _ in queued) == sorted(j.job_id for j in jobs)
    for _, score in queued:
        assert before_ms - 1000 <= score <= time.time() * 1000 + 1000
    for job in jobs:
        key = f"arq:job:{job.job_id}"
        raw = await redis.get(key)
        assert raw is not None
        # arq's default expiry: a day past the time the job is due.
        assert 86_000_000 < await redis.pttl(key) <= 86_400_000
        function, args, kwargs, job_try, enqueue_ms = deserialize_job_raw(raw)
        assert function == JobName.PROCESS_INBOUND.value
        assert args == ()
        assert kwargs == {
            "conversation_id": job.conversation_id,
            "message_id": job.message_id,
            "correlation_id": job.correlation_id,
        }
        assert job_try is None
        assert abs(enqueue_ms - before_ms) < 5000
    assert metrics.value("bridge_jobs_enqueued_total") == 3
    await redis.delete(own_queue, *(f"arq:job:{j.job_id}" for j in jobs))


async def test_a_message_rung_twice_or_already_done_is_not_queued_again(
    redis: Redis, redis_url: str, own_queue: str
) -> None:
    metrics = Metrics()
    bell = await _started(redis_url, own_queue, metrics)
    first, done = _jobs(2)
    # A job that already ran keeps its result key for a while: arq would not enqueue it again.
    await redis.set(result_key_prefix + done.job_id, b"x", px=60_000)
    try:
        bell.ring([first])
        await bell.drained()
        bell.ring([first, done])
        await bell.drained()
    finally:
        await bell.close()
    assert await redis.zcard(own_queue) == 1
    assert metrics.value("bridge_jobs_enqueued_total") == 1
    await redis.delete(
        own_queue,
        f"arq:job:{first.job_id}",
        result_key_prefix + done.job_id,
    )


async def test_redis_away_is_counted_and_the_bell_keeps_working(own_queue: str) -> None:
    metrics = Metrics()
    bell = await _started(f"redis://127.0.0.1:{free_port()}/0", own_queue, metrics)
    try:
        bell.ring(_jobs(2))
        await bell.drained()
        bell.ring(_jobs(1))
        await bell.drained()
    finally:
        await bell.close()
    assert metrics.value("bridge_enqueue_failed_total") == 3
    assert metrics.value("bridge_jobs_enqueued_total") == 0


async def test_a_full_queue_leaves_the_oldest_to_the_sweeper(
    redis: Redis, redis_url: str, own_queue: str
) -> None:
    metrics = Metrics()
    bell = Doorbell(Enqueuer(redis_url, own_queue), metrics, max_pending=2)
    jobs = _jobs(3)
    bell.ring(jobs)  # not started yet: nothing is sent, the queue holds two
    assert metrics.value("bridge_enqueue_dropped_total") == 1
    bell.start()
    await bell.close()  # sends what is pending before stopping
    queued = {m.decode() for m in await redis.zrange(own_queue, 0, -1)}
    assert queued == {j.job_id for j in jobs[1:]}
    await redis.delete(own_queue, *(f"arq:job:{m}" for m in queued))


async def _scripts_run(redis: Redis) -> int:
    """How many enqueue scripts Redis has run so far (a NOSCRIPT miss before loading is not)."""
    stats = (await redis.info("commandstats")).get("cmdstat_evalsha", {})
    return int(stats.get("calls", 0)) - int(stats.get("failed_calls", 0))


async def test_large_bursts_go_in_several_round_trips(
    redis: Redis, redis_url: str, own_queue: str
) -> None:
    metrics = Metrics()
    bell = await _started(redis_url, own_queue, metrics, max_batch=7)
    jobs = _jobs(30)
    before = await _scripts_run(redis)
    try:
        bell.ring(jobs)
        await bell.drained()
    finally:
        await bell.close()
    assert await _scripts_run(redis) - before == 5  # 7 + 7 + 7 + 7 + 2
    assert await redis.zcard(own_queue) == 30
    assert metrics.value("bridge_jobs_enqueued_total") == 30
    await redis.delete(own_queue, *(f"arq:job:{j.job_id}" for j in jobs))
