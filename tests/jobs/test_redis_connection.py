"""`OutageRetry`, the worker's Redis retry policy, on its own: unbounded only while the task it
is attached to runs. The end-to-end proof (a real worker, real Redis restarts) is
test_worker_survives_redis.py."""

from __future__ import annotations

import asyncio
import copy
import logging

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from jobs.redis_connection import (
    MAX_BACKOFF_SECONDS,
    RETRIES_WHEN_STOPPING,
    OutageRetry,
    backoff_seconds,
    worker_redis_settings,
)


class Flaky:
    """An operation that fails `failures` times (a refused connection), then answers."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0
        self.disconnects = 0

    async def do(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise ConnectionRefusedError(111, "Connection refused")
        return "PONG"

    async def fail(self, _error: Exception) -> None:
        self.disconnects += 1


def test_the_backoff_doubles_up_to_its_cap_and_never_overflows() -> None:
    pauses = [backoff_seconds(n) for n in range(1, 8)]
    assert pauses == sorted(pauses)
    assert pauses[0] < pauses[1] < MAX_BACKOFF_SECONDS
    assert backoff_seconds(100_000) == MAX_BACKOFF_SECONDS


def test_every_connection_shares_the_one_policy() -> None:
    retry = OutageRetry()
    assert copy.deepcopy(retry) is retry
    settings = worker_redis_settings("redis://127.0.0.1:6390/3", retry)
    assert settings.retry is retry
    assert (settings.port, settings.database) == (6390, 3)
    assert settings.retry_on_error is not None
    assert RedisConnectionError in settings.retry_on_error


async def test_unattached_it_gives_up_after_a_few_attempts() -> None:
    flaky = Flaky(failures=100)
    with pytest.raises(ConnectionRefusedError):
        await OutageRetry().call_with_retry(flaky.do, flaky.fail)
    assert flaky.calls == RETRIES_WHEN_STOPPING + 1


async def test_while_its_task_runs_it_waits_for_redis_and_logs_the_outage(
    caplog: pytest.LogCaptureFixture,
) -> None:
    retry = OutageRetry()
    flaky = Flaky(failures=RETRIES_WHEN_STOPPING + 3)

    async def worker() -> str:
        retry.attach()
        return await retry.call_with_retry(flaky.do, flaky.fail)

    with caplog.at_level(logging.INFO, logger="jobs.redis_connection"):
        assert await asyncio.wait_for(worker(), 10) == "PONG"
    assert flaky.calls == RETRIES_WHEN_STOPPING + 4
    assert flaky.disconnects == RETRIES_WHEN_STOPPING + 3
    events = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert events == [("WARNING", "jobs.redis.unavailable"), ("INFO", "jobs.redis.back")]


async def test_once_its_task_has_ended_it_gives_up_again() -> None:
    retry = OutageRetry()

    async def worker() -> None:
        retry.attach()

    await asyncio.create_task(worker())
    flaky = Flaky(failures=100)
    with pytest.raises(ConnectionRefusedError):
        await retry.call_with_retry(flaky.do, flaky.fail)
    assert flaky.calls == RETRIES_WHEN_STOPPING + 1
