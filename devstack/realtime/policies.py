"""Private-channel authorization: RLS policies on `realtime.messages` decide, as in Realtime.

Inside a transaction that is always rolled back, the check takes on the caller's identity
(`role`, `request.jwt.claims`, `realtime.topic`), then:

- read (joining a private channel): trial rows for the `broadcast` and `presence` extensions are
  inserted with the server's own rights, and the caller may read if it can select either back;
- write (broadcasting on one): the caller inserts a `broadcast` row itself; an RLS refusal
  (42501) means no.

`service_role` bypasses RLS, so it may always do both.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

import asyncpg

log = logging.getLogger("devstack.realtime")

_IDENTITY_SQL = """
select set_config('role', $1, true),
       set_config('realtime.topic', $2, true),
       set_config('request.jwt.claims', $3, true),
       set_config('request.jwt.claim.role', $1, true),
       set_config('request.jwt.claim.sub', coalesce($4, ''), true),
       set_config('request.headers', '{}', true)
"""
_TRIAL_ROWS_SQL = """
insert into realtime.messages (topic, extension)
values ($1, 'broadcast'), ($1, 'presence')
returning id, extension
"""
_READ_BACK_SQL = "select count(*) from realtime.messages where topic = $1 and id = any($2::uuid[])"
_WRITE_SQL = "insert into realtime.messages (topic, extension) values ($1, 'broadcast')"


async def _take_identity(
    conn: asyncpg.pool.PoolConnectionProxy, topic: str, claims: Mapping[str, Any]
) -> None:
    sub = claims.get("sub")
    await conn.execute(
        _IDENTITY_SQL,
        str(claims["role"]),
        topic,
        json.dumps(dict(claims)),
        sub if isinstance(sub, str) else None,
    )


async def can_read(pool: asyncpg.Pool, topic: str, claims: Mapping[str, Any]) -> bool:
    async with pool.acquire() as conn:
        tx = conn.transaction()
        await tx.start()
        try:
            rows = await conn.fetch(_TRIAL_ROWS_SQL, topic)
            await _take_identity(conn, topic, claims)
            visible = await conn.fetchval(_READ_BACK_SQL, topic, [r["id"] for r in rows])
            return bool(visible)
        except asyncpg.PostgresError as exc:
            # Realtime reports a failing policy (or an unknown role) as "no permission".
            log.info("realtime: read check on %r failed: %s", topic, exc)
            return False
        finally:
            await tx.rollback()


async def can_write(pool: asyncpg.Pool, topic: str, claims: Mapping[str, Any]) -> bool:
    async with pool.acquire() as conn:
        tx = conn.transaction()
        await tx.start()
        try:
            await _take_identity(conn, topic, claims)
            await conn.execute(_WRITE_SQL, topic)
            return True
        except asyncpg.PostgresError as exc:
            if exc.sqlstate != "42501":
                log.info("realtime: write check on %r failed: %s", topic, exc)
            return False
        finally:
            await tx.rollback()
