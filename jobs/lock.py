"""Per-conversation exclusivity: a session-level advisory lock on a dedicated connection, plus a
fencing epoch.

Session locks need a session connection (direct, or Supavisor session mode): under the
transaction pooler the lock would stay on a backend that returns to the pool. A dropped
connection frees the lock silently, so the holder also claims a new epoch in
`conversation_turn_fences`; every write of the turn asserts it (`private.assert_turn_fence`), so a
worker that lost its lock can neither write nor, since sends are preceded by a fenced write, send.
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


FENCE_SQLSTATE = "WBF01"


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
        cls, pool: asyncpg.Pool, conversation_id: uuid.UUID, holder: str, *, handing_off: bool
    ) -> tuple[ConversationLock, dict[str, Any]] | None:
        """Take the conversation when it has work and nobody holds it, in one round trip
        (`private.begin_turn`): the lock, a new fencing epoch and the turn's first verdict
        (its JSON, read by `jobs.turn_store`). None when busy or when there is nothing to do."""
        conn = await pool.acquire()
        try:
            raw = await conn.fetchval(
                "select private.begin_turn($1, $2, $3)", conversation_id, holder, handing_off
            )
        except BaseException:
            # The lock may have been taken: closing the session frees it for sure.
            _terminate(conn)
            await pool.release(conn)
            raise
        if raw is None:
            await pool.release(conn)
            return None
        begun: dict[str, Any] = json.loads(raw)
        return cls(pool, conn, conversation_id, int(begun["epoch"])), begun

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
            waiting = await self.conn.fetchval(
                "select private.unlock_conversation($1)", self.conversation_id
            )
        except (asyncpg.InterfaceError, asyncpg.PostgresConnectionError, OSError):
            _terminate(self.conn)  # the connection is gone, and the lock went with it
            waiting = True  # unknown: the caller looks again
        except BaseException:
            _terminate(self.conn)
            await self._give_back()
            raise
        await self._give_back()
        return bool(waiting)

    async def _give_back(self) -> None:
        try:
            await self._pool.release(self.conn)
        except asyncpg.InterfaceError:
            pass  # asyncpg already took a dead connection back
