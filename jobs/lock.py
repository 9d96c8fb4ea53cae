"""Per-conversation exclusivity: session-level advisory locks, every one of a worker held by a
single session of its own (`LockSession`), plus a fencing epoch per turn.

A turn waits for seconds (the engine thinks, replies wait for their delays) and holds nothing but
memory meanwhile: the advisory locks of all the conversations a worker runs live on one
connection, and the turn's statements run on pooled connections for as long as each takes
(`jobs.database`). One task owns the lock session and runs its statements one at a time, in the
order asked (a connection runs one statement at once); it also keeps the set of conversations it
holds, since a session may take its own advisory lock twice: two jobs of one worker for the same
conversation are refused like jobs of two workers.

Session locks need a session connection (direct, or Supavisor session mode): under the
transaction pooler a lock would stay on a backend that returns to the pool. A dropped session
frees all its locks silently, so each turn also claims a new epoch in `conversation_turn_fences`;
every write of the turn asserts it (`private.assert_turn_fence`), so a worker that lost its locks
can neither write nor, since sends are preceded by a fenced write, send. The worker also learns of
the loss at once (the session's generation moves on): its turns stop at their next statement with
`FenceLost(session_lost=True)` and their jobs are retried, and the next take opens a new session.

Nothing may keep a lock taken by mistake: a lock statement that fails in an unknown state, or an
unlock that cannot run, closes the session (which frees every lock it held), and a lock whose
asker gave up waiting is given back at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import asyncpg

from jobs import database

log = logging.getLogger(__name__)

FENCE_SQLSTATE = "WBF01"
# How long a take waits for the lock session's answer (it queues behind the session's other
# statements, each a fraction of a millisecond): longer means the session is stuck or the
# database away, and the turn fails (arq retries it) instead of hanging.
TAKE_TIMEOUT_SECONDS = 5.0
# How long an unlock is awaited; the session still runs it afterwards.
RELEASE_TIMEOUT_SECONDS = 5.0
# A lock session that could not connect is not tried again sooner than this.
RECONNECT_PAUSE_SECONDS = 1.0


class FenceLost(Exception):
    """This worker no longer owns the conversation's turn; it must stop without sending.
    `session_lost`: the worker's lock session ended (the turn is worth retrying at once), rather
    than another worker having claimed the conversation."""

    def __init__(self, detail: str, *, session_lost: bool = False) -> None:
        super().__init__(detail)
        self.session_lost = session_lost


class LockUnavailable(Exception):
    """The lock session could not answer a take in time: the turn fails and its job is retried."""


@contextmanager
def fence_errors() -> Iterator[None]:
    """Turn the database's "turn fence lost" error (raised by any fenced SQL) into FenceLost."""
    try:
        yield
    except asyncpg.PostgresError as exc:
        if getattr(exc, "sqlstate", None) == FENCE_SQLSTATE:
            raise FenceLost(str(exc)) from exc
        raise


@dataclass
class _Request:
    kind: Literal["lock", "unlock", "ping"]
    conversation_id: uuid.UUID | None = None
    generation: int = 0
    future: asyncio.Future[Any] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class LockSession:
    """The one connection that holds every advisory lock of this worker, served by one task."""

    def __init__(self, dsn: str, *, command_timeout: float) -> None:
        self._dsn = dsn
        self._command_timeout = command_timeout
        self._requests: asyncio.Queue[_Request] = asyncio.Queue()
        self._conn: asyncpg.Connection | None = None
        self._held: set[uuid.UUID] = set()
        self._connect_after = 0.0
        self._task: asyncio.Task[None] | None = None
        # Moves on whenever the session is lost: a lock of an earlier generation is gone.
        self.generation = 0

    @property
    def held(self) -> int:
        return len(self._held)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._serve())

    async def close(self, within: float) -> None:
        """Stop serving and close the session (freeing its locks): gracefully when the database
        answers within `within` seconds, else by dropping the connection."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                await asyncio.wait_for(conn.close(), within)
            except (TimeoutError, OSError, asyncpg.InterfaceError):
                conn.terminate()

    async def lock(self, conversation_id: uuid.UUID, *, within: float) -> int | None:
        """The session's generation when the conversation, having work, is taken now; None when
        it has no work or another worker, or another job of this one, holds it."""
        request = _Request("lock", conversation_id)
        self._requests.put_nowait(request)
        try:
            generation: int | None = await asyncio.wait_for(request.future, within)
        except TimeoutError as exc:
            raise LockUnavailable(f"no answer from the lock session within {within:g} s") from exc
        return generation

    async def unlock(self, conversation_id: uuid.UUID, generation: int, *, within: float) -> bool:
        """Give the conversation back; True when work is waiting (stored while it was held: its
        jobs found it busy and left it to us), or when that is unknown (the lock went with a
        lost session, or the answer did not come in time: the session still unlocks it)."""
        request = _Request("unlock", conversation_id, generation)
        self._requests.put_nowait(request)
        try:
            waiting: bool = await asyncio.wait_for(request.future, within)
        except TimeoutError:
            return True
        return waiting

    async def ping(self, within: float) -> bool:
        """Whether the session answers a statement within `within` seconds now."""
        request = _Request("ping")
        self._requests.put_nowait(request)
        try:
            return bool(await asyncio.wait_for(request.future, within))
        except (TimeoutError, LockUnavailable, asyncpg.PostgresError, OSError):
            return False

    async def _serve(self) -> None:
        while True:
            request = await self._requests.get()
            if request.future.done() and request.kind != "unlock":
                continue  # its asker gave up before it ran
            try:
                result = await self._run(request)
            except Exception as exc:
                if not request.future.done():
                    request.future.set_exception(exc)
                continue
            if not request.future.done():
                request.future.set_result(result)
            elif request.kind == "lock" and result is not None:
                # Its asker gave up while it ran: nobody will use or release the lock.
                assert request.conversation_id is not None
                await self._run(_Request("unlock", request.conversation_id, result))

    async def _run(self, request: _Request) -> Any:
        if request.kind == "unlock":
            return await self._unlock(request)
        conn = await self._connection()
        try:
            if request.kind == "ping":
                return await conn.fetchval("select true")
            conversation_id = request.conversation_id
            if conversation_id in self._held:
                return None  # another job of this worker runs it
            if not await conn.fetchval("select private.lock_conversation($1)", conversation_id):
                return None
        except Exception as exc:
            # Whether a failed lock statement took the lock is unknown: closing the session
            # frees it for sure.
            self._lose(f"lock statement failed: {exc!r}")
            if database.connection_failed(exc):
                raise LockUnavailable(f"lock session lost: {exc!r}") from exc
            raise
        assert conversation_id is not None
        self._held.add(conversation_id)
        return self.generation

    async def _unlock(self, request: _Request) -> bool:
        conversation_id = request.conversation_id
        if request.generation != self.generation or conversation_id not in self._held:
            return True  # gone with a lost session
        assert self._conn is not None
        try:
            waiting = await self._conn.fetchval(
                "select private.unlock_conversation($1)", conversation_id
            )
        except Exception as exc:
            self._lose(f"unlock failed: {exc!r}")
            return True
        self._held.discard(conversation_id)
        return bool(waiting)

    async def _connection(self) -> asyncpg.Connection:
        if self._conn is not None and not self._conn.is_closed():
            return self._conn
        loop = asyncio.get_running_loop()
        # Not sooner than a pause after a failed attempt; its askers wait (within their bound)
        # rather than fail at once when the database has just come back.
        await asyncio.sleep(max(0.0, self._connect_after - loop.time()))
        try:
            conn = await asyncpg.connect(
                self._dsn, timeout=TAKE_TIMEOUT_SECONDS, command_timeout=self._command_timeout
            )
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            self._connect_after = loop.time() + RECONNECT_PAUSE_SECONDS
            raise LockUnavailable(f"the lock session cannot connect: {exc!r}") from exc
        conn.add_termination_listener(self._terminated)
        self._conn = conn
        return conn

    def _terminated(self, conn: object) -> None:
        if conn is self._conn:
            self._lose("the lock session's connection closed")

    def _lose(self, reason: str) -> None:
        """Close the session: Postgres frees its locks, and the turns holding them stop."""
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            conn.terminate()
        if self._held:
            log.warning(
                "jobs.lock.session_lost", extra={"detail": reason, "locks": len(self._held)}
            )
        self._held.clear()
        self.generation += 1


class ConversationLock:
    """A conversation this worker has taken: its lock in the `LockSession`, the turn's fencing
    epoch, and the pool the turn's statements run on."""

    def __init__(
        self,
        session: LockSession,
        db: asyncpg.Pool,
        conversation_id: uuid.UUID,
        generation: int,
    ) -> None:
        self._session = session
        self.db = db
        self.conversation_id = conversation_id
        self._generation = generation
        self.epoch = 0

    @classmethod
    async def take(
        cls,
        session: LockSession,
        db: asyncpg.Pool,
        conversation_id: uuid.UUID,
        holder: str,
        *,
        handing_off: bool,
        within: float = TAKE_TIMEOUT_SECONDS,
    ) -> tuple[ConversationLock, dict[str, Any]] | None:
        """Take the conversation when it has work and nobody holds it, then claim a new fencing
        epoch and read the turn's first verdict in one statement (`private.begin_turn`; its
        JSON is read by `jobs.turn_store`). None when busy or when there is nothing to do."""
        generation = await session.lock(conversation_id, within=within)
        if generation is None:
            return None
        lock = cls(session, db, conversation_id, generation)
        try:
            raw = await lock.fetchval(
                "select private.begin_turn($1, $2, $3)", conversation_id, holder, handing_off
            )
        except BaseException:
            await lock.release()
            raise
        if raw is None:  # the conversation was deleted meanwhile
            await lock.release()
            return None
        begun: dict[str, Any] = json.loads(raw)
        lock.epoch = int(begun["epoch"])
        return lock, begun

    @property
    def lost(self) -> bool:
        """The session that took the lock is gone (another worker may run the conversation)."""
        return self._session.generation != self._generation

    async def fetchval(self, query: str, *args: Any) -> Any:
        """A statement of the turn, on a pooled connection. FenceLost when the lock went with
        the session, or when the statement is fenced and another holder claimed the turn."""
        if self.lost:
            raise FenceLost(
                f"the lock session of conversation {self.conversation_id} was lost",
                session_lost=True,
            )
        with fence_errors():
            return await database.fetchval(self.db, query, *args)

    async def assert_fence(self) -> None:
        await self.fetchval(
            "select private.assert_turn_fence($1, $2)", self.conversation_id, self.epoch
        )

    async def release(self) -> bool:
        """Unlock; True when work is waiting or that is unknown (the caller looks again)."""
        return await self._session.unlock(
            self.conversation_id, self._generation, within=RELEASE_TIMEOUT_SECONDS
        )


async def can_take_turns(session: LockSession, db: asyncpg.Pool, within: float) -> bool:
    """Whether the worker can serve a turn now: its lock session answers `within` seconds, and
    a pooled connection comes free as fast and its database answers."""
    if not await session.ping(within):
        return False
    try:
        async with db.acquire(timeout=within) as conn:
            await conn.fetchval("select 1", timeout=within)
    except (TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
        return False
    return True
