"""How the worker's statements reach Postgres: each on a pooled connection for as long as it runs,
taken within a bound, and which failures are the connection's rather than the statement's.

A turn holds no connection while it waits (the engine thinks, a reply waits for its delay): the
pool bounds the statements in flight, not the turns, so its size follows the database work.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import asyncpg

log = logging.getLogger(__name__)

# A healthy pool frees a connection within a statement's time: waiting longer means the pool is
# starved or the database stuck, and the turn fails (arq retries it) instead of hanging.
POOL_WAIT_SECONDS = 5.0
# Pauses between attempts of a statement that must outlive an outage (doubling up to the cap).
FIRST_PAUSE_SECONDS = 0.2
MAX_PAUSE_SECONDS = 2.0


class DatabaseBusy(Exception):
    """No pooled connection came free in time."""


def connection_failed(exc: BaseException) -> bool:
    """Whether `exc` says the connection or the server failed (dropped, shutting down, starting
    up, not answering in time), so the same statement may succeed on a new connection."""
    if isinstance(exc, DatabaseBusy | asyncpg.InterfaceError | asyncpg.PostgresConnectionError):
        return True
    if isinstance(exc, OSError):  # TimeoutError included
        return True
    # Class 57P: admin or crash shutdown, cannot connect now (the server is restarting).
    return isinstance(exc, asyncpg.PostgresError) and str(exc.sqlstate or "").startswith("57P")


async def fetchval(pool: asyncpg.Pool, query: str, *args: Any) -> Any:
    """One statement on a connection of `pool`, given back as soon as it answers."""
    try:
        conn = await pool.acquire(timeout=POOL_WAIT_SECONDS)
    except TimeoutError as exc:
        raise DatabaseBusy(f"no database connection free within {POOL_WAIT_SECONDS:g} s") from exc
    try:
        return await conn.fetchval(query, *args)
    finally:
        await pool.release(conn)


async def fetchval_through_outage(pool: asyncpg.Pool, query: str, *args: Any, within: float) -> Any:
    """`fetchval` for a statement whose loss would cost more than waiting: what a send's outcome
    is. It is tried again on a new connection while the database is away, for `within` seconds;
    the statement must be safe to run twice (its first run may have committed before the answer
    was lost)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    pause = FIRST_PAUSE_SECONDS
    while True:
        try:
            return await fetchval(pool, query, *args)
        except Exception as exc:
            if not connection_failed(exc) or loop.time() + pause > deadline:
                raise
            log.warning("jobs.database.retrying", extra={"detail": repr(exc), "wait_s": pause})
        await asyncio.sleep(pause)
        pause = min(pause * 2, MAX_PAUSE_SECONDS)
