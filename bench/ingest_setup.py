"""What the ingest benchmark stands on: the tenant it writes into and the Redis keys it cleans."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import asyncpg
from arq.constants import job_key_prefix
from redis.asyncio import Redis
from redis.exceptions import RedisError

from bridge.queue import inbound_job_id
from devstack.workspaces import create_workspace


@dataclass(frozen=True)
class Tenant:
    workspace_id: uuid.UUID
    phone_number_id: str
    # The conversation the ceiling inserts into (the bridge makes one per customer itself).
    conversation_id: uuid.UUID


async def make_tenant(database_url: str) -> Tenant:
    conn = await asyncpg.connect(database_url)
    try:
        async with conn.transaction():
            ws = await create_workspace(conn, "Bench")
            conversation: uuid.UUID = await conn.fetchval(
                "insert into public.conversations (workspace_id, channel_id, phone_number_id,"
                " phone) values ($1, $2, $3, '570000000000') returning id",
                ws.id,
                ws.channel_id,
                ws.phone_number_id,
            )
    finally:
        await conn.close()
    return Tenant(ws.id, ws.phone_number_id, conversation)


async def stored_messages(database_url: str, tenant: Tenant) -> int:
    conn = await asyncpg.connect(database_url)
    try:
        count: int = await conn.fetchval(
            "select count(*) from public.messages where workspace_id = $1", tenant.workspace_id
        )
    finally:
        await conn.close()
    return count


async def check_redis(redis_url: str) -> None:
    """Fail before anything starts: without Redis the bridge still answers 200 (the sweeper's
    job), so the run would silently measure an intake that enqueues nothing."""
    redis = Redis.from_url(redis_url, socket_connect_timeout=2)
    try:
        await redis.ping()
    except (RedisError, OSError) as exc:
        raise RuntimeError(f"Redis does not answer at {redis_url}: {exc}") from exc
    finally:
        await redis.aclose()


async def drop_queue(redis_url: str, queue_name: str, database_url: str, tenant: Tenant) -> int:
    """Delete the run's queue and the job of every message it stored; nothing else is touched
    (job keys are not namespaced by queue, so they are named one by one)."""
    conn = await asyncpg.connect(database_url)
    try:
        ids = await conn.fetch(
            "select id from public.messages where workspace_id = $1", tenant.workspace_id
        )
    finally:
        await conn.close()
    keys = [job_key_prefix + inbound_job_id(str(row["id"])) for row in ids]
    redis = Redis.from_url(redis_url)
    try:
        deleted = int(await redis.delete(queue_name))
        for i in range(0, len(keys), 1000):
            deleted += int(await redis.delete(*keys[i : i + 1000]))
    finally:
        await redis.aclose()
    return deleted
