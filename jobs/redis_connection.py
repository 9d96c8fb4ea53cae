"""The worker's Redis connection: while the worker runs, a Redis that goes away is waited for.

arq lets a Redis error out of its poll loop (`Worker.main`), and the process ends: a Redis
restart or failover would end every worker. arq hands `RedisSettings.retry` to redis-py, which
reconnects and retries a command (plain commands and pipelines alike) that failed with an error
of `retry_on_error`; `OutageRetry` is that policy. While the worker's main task runs (arq's poll
loop, and every job beside it), a command that cannot reach Redis waits, backing off up to
`MAX_BACKOFF_SECONDS`, and carries on when Redis answers again: `jobs.redis.unavailable` is
logged at WARNING when Redis goes (and every `STILL_AWAY_LOG_SECONDS` while it stays away),
`jobs.redis.back` at INFO when a command succeeds again. The queue itself may come back empty
(a Redis without persistence): the sweeper enqueues the messages whose jobs were lost.

Outside the main task's life a command gives up after `RETRIES_WHEN_STOPPING` attempts: before
start-up (arq's `create_pool`, which has its own `conn_retries`; `arq --check`) and after it
ended (SIGTERM cancels it; `--burst` returns), so shutdown never waits for a Redis that is away.
A worker stopped then exits with arq's error from its last Redis call (removing its health
record), without running `on_shutdown`: its database connections end with the process.

Left to the supervisor: a connection lost between WATCH and EXEC of one of arq's transactions
raises `WatchError` where arq does not catch it, which still ends the process (a restart in that
millisecond window; systemd's Restart=always starts it again).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from arq.connections import RedisSettings
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

log = logging.getLogger(__name__)

T = TypeVar("T")

# What a lost or refused connection raises: redis-py's own errors for a command, OSError (and
# TimeoutError, one of them) from the socket while it connects.
RETRY_ON: tuple[type[Exception], ...] = (RedisConnectionError, RedisTimeoutError, OSError)
FIRST_BACKOFF_SECONDS = 0.05
# The longest pause between two attempts: how late the worker notices Redis is back.
MAX_BACKOFF_SECONDS = 1.0
STILL_AWAY_LOG_SECONDS = 30.0
# Attempts after the first when the worker is not running (start-up, shutdown, `arq --check`).
RETRIES_WHEN_STOPPING = 2


def backoff_seconds(failures: int) -> float:
    """The pause after the n-th failure in a row: doubling from FIRST_BACKOFF_SECONDS up to
    MAX_BACKOFF_SECONDS. (redis-py's ExponentialBackoff computes `base * 2 ** failures`, which
    overflows a float after about a thousand failures: a quarter of an hour of outage.)"""
    return min(MAX_BACKOFF_SECONDS, FIRST_BACKOFF_SECONDS * 2.0 ** min(failures, 32))


class OutageRetry(Retry):
    """redis-py's retry policy, unbounded while the worker's main task runs (`attach`).

    One instance serves every connection of the pool: redis-py deep-copies the policy into each
    connection, and a copy would neither see `attach` nor share the outage's state."""

    def __init__(self) -> None:
        super().__init__(
            NoBackoff(),  # unused: `call_with_retry` pauses `backoff_seconds`
            RETRIES_WHEN_STOPPING,
            supported_errors=RETRY_ON,  # type: ignore[arg-type]  # OSError too, see RETRY_ON
        )
        self._worker: asyncio.Task[Any] | None = None
        self._away_since: float | None = None
        self._warned_at = 0.0

    def __deepcopy__(self, memo: dict[int, Any]) -> OutageRetry:
        return self

    def attach(self) -> None:
        """Wait for Redis for as long as the current task (arq's main task: call this from
        `on_startup`) runs."""
        self._worker = asyncio.current_task()

    def _worker_running(self) -> bool:
        return self._worker is not None and not self._worker.done()

    async def call_with_retry(
        self, do: Callable[[], Awaitable[T]], fail: Callable[[RedisError], Any]
    ) -> T:
        failures = 0
        while True:
            try:
                result = await do()
            except self._supported_errors as error:
                failures += 1
                await fail(error)  # disconnects; raises what must not be retried
                if failures > self._retries and not self._worker_running():
                    raise
                self._note_away(error)
                await asyncio.sleep(backoff_seconds(failures))
            else:
                if self._away_since is not None:
                    self._note_back(self._away_since)
                return result

    def _note_away(self, error: BaseException) -> None:
        now = time.monotonic()
        if self._away_since is None:
            self._away_since = now
        elif now - self._warned_at < STILL_AWAY_LOG_SECONDS:
            return
        self._warned_at = now
        log.warning(
            "jobs.redis.unavailable",
            extra={"detail": repr(error), "away_seconds": round(now - self._away_since, 1)},
        )

    def _note_back(self, since: float) -> None:
        away = time.monotonic() - since
        self._away_since = None
        log.info("jobs.redis.back", extra={"away_seconds": round(away, 1)})


def worker_redis_settings(redis_url: str, retry: OutageRetry) -> RedisSettings:
    """arq's settings for REDIS_URL with `retry` as redis-py's retry policy."""
    settings = RedisSettings.from_dsn(redis_url)
    settings.retry = retry
    # redis-py retries a failed command only when its error is listed here (and re-raises the
    # others), whatever the policy's own list says.
    settings.retry_on_error = list(RETRY_ON)
    return settings
