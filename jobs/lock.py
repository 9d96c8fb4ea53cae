"""Per-conversation exclusivity: a session-level advisory lock on a dedicated connection, plus a
fencing epoch.

Session locks need a session connection (direct, or Supavisor session mode): under the
transaction pooler the lock would stay on a backend that returns to the pool. A dropped
connection frees the lock silently, so the holder also claims a new epoch in
`conversation_turn_fences`; every write of the turn asserts it (`private.assert_turn_fence`), so a
worker that lost its lock can neither write nor, since sends are preceded by a fenced write, send.

Nothing may keep a lock connection out of its pool: a failure anywhere after the lock may have
been taken closes the session (which frees every lock it held), and taking a connection waits
at most `ACQUIRE_TIMEOUT_SECONDS`, so a starved pool fails the turn (arq retries it) instead of
hanging it.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import asyncpg

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy


class FenceLost(Exception):
    """This worker no longer owns the conversation's turn; it must stop without sending."""


class LockPoolExhausted(Exception):
    """No lock connection came free in time: the turn fails and its job is retried."""


FENCE_SQLSTATE = "WBF01"
# Turns hold at most JOBS_MAX_JOBS of the JOBS_MAX_JOBS + 2 lock connections, so a healthy
# pool always has one free at once: waiting longer than this means it is starved or stuck.
ACQUIRE_TIMEOUT_SECONDS = 5.0
RELEASE_TIMEOUT_SECONDS = 5.0


@contextmanager
def fence_errors() -> Iterator[None]:
    """Turn the database's "turn fence lost" error (raised by any fenced SQL) into FenceLost."""
    try:
        yield
    except asyncpg.PostgresError as exc:
        if getattr(exc, "sqlstate", None) == FENCE_SQLSTATE:
            raise FenceLost(str(exc)) from exc
        raise


def _terminate(conn: PoolConnectionProxy[asyncpg.Record]) -> None:
    try:
        conn.terminate()
    except asyncpg.InterfaceError:
        pass  # already lost: asyncpg has taken it back from us


async def _discard(pool: asyncpg.Pool, conn: PoolConnectionProxy[asyncpg.Record]) -> None:
    _terminate(conn)
    try:
        await pool.release(conn)
    except asyncpg.InterfaceError:
        pass  # asyncpg already took a dead connection back


async def pool_can_lock(pool: asyncpg.Pool, within: float) -> bool:
    """Whether the lock pool can serve a turn now: a connection comes free `within` seconds
    and its database answers as fast."""
    try:
        async with pool.acquire(timeout=within) as conn:
            await conn.fetchval("select 1", timeout=within)
    except (TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
        return False
    return True


class ConversationLock:
    def __init__(
        self,
        pool: asyncpg.Pool,
        conn: PoolConnectionProxy[asyncpg.Record],
        conversation_id: uuid.UUID,
        epoch: int,
    ) -> None:
        self._pool = pool
        self.conn = conn
        self.conversation_id = conversation_id
        self.epoch = epoch

    @classmethod
    async def take(
        cls,
        pool: asyncpg.Pool,
        conversation_id: uuid.UUID,
        holder: str,
        *,
        handing_off: bool,
        acquire_timeout: float = ACQUIRE_TIMEOUT_SECONDS,
    ) -> tuple[ConversationLock, dict[str, Any]] | None:
        """Take the conversation when it has work and nobody holds it, in one round trip
        (`private.begin_turn`): the lock, a new fencing epoch and the turn's first verdict
        (its JSON, read by `jobs.turn_store`). None when busy or when there is nothing to do.
        Raises LockPoolExhausted when no connection comes free within `acquire_timeout`."""
        try:
            conn = await pool.acquire(timeout=acquire_timeout)
        except TimeoutError as exc:
            raise LockPoolExhausted(
                f"no lock connection free within {acquire_timeout:g} s"
            ) from exc
        try:
            raw = await conn.fetchval(
                "select private.begin_turn($1, $2, $3)", conversation_id, holder, handing_off
            )
            begun: dict[str, Any] | None = None if raw is None else json.loads(raw)
            lock = None if begun is None else cls(pool, conn, conversation_id, int(begun["epoch"]))
        except BaseException:
            # The lock may have been taken: closing the session frees it for sure.
            await _discard(pool, conn)
            raise
        if lock is None or begun is None:
            await pool.release(conn)
            return None
        return lock, begun

    async def abandon(self) -> None:
        """Give the lock up without asking anything of the session (the turn failed before it
        could be used): closing the session frees the lock for sure."""
        await _discard(self._pool, self.conn)

    async def assert_fence(self) -> None:
        try:
            with fence_errors():
                await self.conn.execute(
                    "select private.assert_turn_fence($1, $2)", self.conversation_id, self.epoch
                )
        except (asyncpg.InterfaceError, OSError) as exc:
            raise FenceLost(f"lock connection lost: {exc}") from exc

    async def release(self) -> bool:
        """Unlock; True when inbound messages are waiting (stored while the lock was held, their
        jobs found it busy and left them to us). The connection goes back to the pool as it is
        (no reset round trip): unless the unlock surely ran, it is closed instead, which frees
        every lock its session held."""
        try:
            # Bounded: it runs in a turn's `finally`, also when the job was cancelled (timeout,
            # SIGTERM), and nothing would cancel it again.
            waiting = await self.conn.fetchval(
                "select private.unlock_conversation($1)",
                self.conversation_id,
                timeout=RELEASE_TIMEOUT_SECONDS,
            )
        except (asyncpg.InterfaceError, asyncpg.PostgresConnectionError, OSError):
            # Gone or not answering (TimeoutError is an OSError): closing the connection frees
            # the lock.
            _terminate(self.conn)
            waiting = True  # unknown: the caller looks again
        except BaseException:
            await _discard(self._pool, self.conn)
            raise
        await self._give_back()
        return bool(waiting)

    async def _give_back(self) -> None:
        try:
            await self._pool.release(self.conn)
        except asyncpg.InterfaceError:
            pass  # asyncpg already took a dead connection back
