"""A connection of the stand-in that listens to Postgres (database broadcasts, captured changes):
opened, served until it drops, and opened again, backing off while the database refuses, as
Realtime's own replication and broadcast connections do."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import ClassVar, Generic, TypeVar

import asyncpg

log = logging.getLogger("devstack.realtime")

RETRY_DELAYS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0)


async def keep_listening(
    database_url: str,
    application_name: str,
    serve: Callable[[asyncpg.Connection], Awaitable[None]],
    listening: asyncio.Event,
    what: str,
) -> None:
    """Run `serve` on a connection of its own, forever; `listening` is cleared while none is
    served (`serve` sets it once its LISTEN is in place). `what` names it in the logs."""
    attempt = 0
    while True:
        try:
            conn = await asyncpg.connect(
                database_url, server_settings={"application_name": application_name}
            )
        except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
            delay = RETRY_DELAYS[min(attempt, len(RETRY_DELAYS) - 1)]
            attempt += 1
            log.warning("realtime: cannot connect for %s (%s); retrying in %ss", what, exc, delay)
            await asyncio.sleep(delay)
            continue
        attempt = 0
        try:
            await serve(conn)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("realtime: the %s connection dropped (%s); reconnecting", what, exc)
        except Exception:
            # Whatever went wrong, the stand-in must not stop listening for good.
            log.exception("realtime: %s failed; reconnecting", what)
        finally:
            listening.clear()
            if not conn.is_closed():
                conn.terminate()
        await asyncio.sleep(RETRY_DELAYS[0])


T = TypeVar("T")


class Listener(Generic[T]):
    """A background task keeping one listening connection served by `_serve` (a subclass's),
    which works through the ids its notifications queued (`_pending`, `_wakeup`)."""

    application_name: ClassVar[str]
    what: ClassVar[str]  # names it in the logs
    ready_timeout: ClassVar[float]

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self.listening = asyncio.Event()
        self._pending: deque[T] = deque()
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(
            keep_listening(
                self.database_url, self.application_name, self._serve, self.listening, self.what
            )
        )
        # Not fatal: a missing database shows in the first requests, and this keeps retrying.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.listening.wait(), self.ready_timeout)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _serve(self, conn: asyncpg.Connection) -> None:
        raise NotImplementedError
