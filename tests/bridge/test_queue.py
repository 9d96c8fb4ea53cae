"""The queue's scripts against real Redis: withdrawing the jobs of messages a turn answered."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator

import pytest
from arq import ArqRedis, create_pool
from arq.constants import in_progress_key_prefix, job_key_prefix, retry_key_prefix

from bridge.queue import (
    FOLLOW_UP_DELAY_MS,
    Enqueuer,
    JobQueue,
    TurnJob,
    inbound_job_id,
    redis_settings,
)


@pytest.fixture
async def arq_redis(redis_url: str) -> AsyncIterator[ArqRedis]:
    pool = await create_pool(redis_settings(redis_url))
    try:
        yield pool
    finally:
        await pool.aclose()


async def test_withdrawing_takes_queued_jobs_off_and_leaves_running_ones(
    arq_redis: ArqRedis, redis_url: str
) -> None:
    queue = f"arq:queue:test-withdraw-{uuid.uuid4().hex[:8]}"
    conversation = str(uuid.uuid4())
    queued, running, other = (str(uuid.uuid4()) for _ in range(3))
    enqueuer = Enqueuer(redis_url, queue)
    try:
        jobs = [TurnJob.for_message(conversation, m, None) for m in (queued, running, other)]
        assert await enqueuer.enqueue(jobs) == 3
    finally:
        await enqueuer.close()
    # A worker claimed this one (arq's in-progress key), and it failed once before.
    running_id = inbound_job_id(running)
    await arq_redis.psetex(in_progress_key_prefix + running_id, 60_000, b"1")
    await arq_redis.set(retry_key_prefix + inbound_job_id(queued), 1, px=60_000)
    try:
        withdrawer = JobQueue(arq_redis, queue)
        assert await withdrawer.withdraw_inbound([queued, running]) == 1
        assert await withdrawer.withdraw_inbound([queued]) == 0  # already gone
        assert await withdrawer.withdraw_inbound([]) == 0

        left = {m.decode() for m in await arq_redis.zrange(queue, 0, -1)}
        assert left == {running_id, inbound_job_id(other)}
        queued_id = inbound_job_id(queued)
        assert await arq_redis.exists(job_key_prefix + queued_id) == 0
        assert await arq_redis.exists(retry_key_prefix + queued_id) == 0
        # The running job keeps what arq needs to finish it; the other message's job is untouched.
        assert await arq_redis.exists(job_key_prefix + running_id) == 1
        assert await arq_redis.exists(job_key_prefix + inbound_job_id(other)) == 1
        # A withdrawn job id is free again: the message could be rung for anew.
        enqueuer = Enqueuer(redis_url, queue)
        try:
            assert await enqueuer.enqueue([TurnJob.for_message(conversation, queued, None)]) == 1
        finally:
            await enqueuer.close()
    finally:
        keys = [queue, in_progress_key_prefix + running_id]
        keys += [job_key_prefix + inbound_job_id(m) for m in (queued, running, other)]
        await arq_redis.delete(*keys)


async def test_follow_up_messages_of_a_conversation_are_due_a_little_later(
    arq_redis: ArqRedis, redis_url: str
) -> None:
    queue = f"arq:queue:test-follow-up-{uuid.uuid4().hex[:8]}"
    a, b = str(uuid.uuid4()), str(uuid.uuid4())
    jobs = [TurnJob.for_message(conv, str(uuid.uuid4()), None) for conv in (a, b, a, a)]
    enqueuer = Enqueuer(redis_url, queue)
    before_ms = time.time() * 1000 - 1  # arq rounds its timestamps to the ms
    try:
        assert await enqueuer.enqueue(jobs) == 4
    finally:
        await enqueuer.close()
    after_ms = time.time() * 1000 + 1
    try:
        scores = {
            m.decode(): score for m, score in await arq_redis.zrange(queue, 0, -1, withscores=True)
        }
        due = [scores[j.job_id] - before_ms for j in jobs]
        elapsed = after_ms - before_ms
        # The first message of each conversation is due at once, the others' jobs later.
        assert all(0 <= d <= elapsed for d in due[:2]), due
        assert all(FOLLOW_UP_DELAY_MS <= d <= FOLLOW_UP_DELAY_MS + elapsed for d in due[2:]), due
        # As arq keeps a deferred job: a day past the time it is due.
        first, follow_up = (job_key_prefix + j.job_id for j in jobs[::2][:2])
        ttl_first, ttl_follow_up = await arq_redis.pttl(first), await arq_redis.pttl(follow_up)
        assert 86_399_000 - elapsed <= ttl_first <= 86_400_000
        assert ttl_first < ttl_follow_up <= 86_400_000 + FOLLOW_UP_DELAY_MS
    finally:
        await arq_redis.delete(queue, *(job_key_prefix + j.job_id for j in jobs))


async def test_a_running_job_set_aside_is_not_due_until_put_back_with_its_own_score(
    arq_redis: ArqRedis, redis_url: str
) -> None:
    queue = f"arq:queue:test-aside-{uuid.uuid4().hex[:8]}"
    job = TurnJob.for_message(str(uuid.uuid4()), str(uuid.uuid4()), None)
    enqueuer = Enqueuer(redis_url, queue)
    try:
        assert await enqueuer.enqueue([job]) == 1
    finally:
        await enqueuer.close()
    try:
        score = int(await arq_redis.zscore(queue, job.job_id) or 0)
        jobs = JobQueue(arq_redis, queue)
        await jobs.set_aside(job.job_id, for_ms=60_000)
        # arq's poll reads the ids due now: the running job is not among them, but the queue
        # still counts it (a worker in burst mode waits for it).
        assert await arq_redis.zrangebyscore(queue, "-inf", time.time() * 1000) == []
        assert await arq_redis.zcard(queue) == 1
        await jobs.put_back(job.job_id, score)
        assert await arq_redis.zscore(queue, job.job_id) == score
        # A job no longer queued (finished, withdrawn) is never added back.
        await arq_redis.zrem(queue, job.job_id)
        await jobs.set_aside(job.job_id, for_ms=60_000)
        await jobs.put_back(job.job_id, score)
        assert await arq_redis.zcard(queue) == 0
    finally:
        await arq_redis.delete(queue, job_key_prefix + job.job_id)
