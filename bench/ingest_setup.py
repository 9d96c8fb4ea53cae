"""What the ingest benchmark stands on: the tenant it writes into, the servers it starts (output
to a log file, every process of the group stopped at the end) and the Redis keys it cleans."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
from redis.asyncio import Redis
from redis.exceptions import RedisError


@dataclass(frozen=True)
class Tenant:
    workspace_id: uuid.UUID
    phone_number_id: str
    # The conversation the ceiling inserts into (the bridge makes one per customer itself).
    conversation_id: uuid.UUID


async def make_tenant(database_url: str) -> Tenant:
    owner, ws, channel, conversation = (uuid.uuid4() for _ in range(4))
    pnid = str(10**15 + uuid.uuid4().int % 10**14)
    conn = await asyncpg.connect(database_url)
    try:
        async with conn.transaction():
            await conn.execute(
                "insert into auth.users (id, email) values ($1, $2)", owner, f"{owner}@bench.local"
            )
            await conn.execute(
                "insert into public.workspaces (id, name, slug, owner_id)"
                " values ($1, 'Bench', $2, $3)",
                ws,
                f"bench-{ws}",
                owner,
            )
            await conn.execute(
                "insert into public.whatsapp_channels (id, workspace_id, phone_number_id, provider)"
                " values ($1, $2, $3, 'meta')",
                channel,
                ws,
                pnid,
            )
            await conn.execute(
                "insert into public.conversations (id, workspace_id, channel_id, phone_number_id,"
                " phone) values ($1, $2, $3, $4, '570000000000')",
                conversation,
                ws,
                channel,
                pnid,
            )
    finally:
        await conn.close()
    return Tenant(ws, pnid, conversation)


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
    keys = [f"arq:job:inbound:{row['id']}" for row in ids]
    redis = Redis.from_url(redis_url)
    try:
        deleted = int(await redis.delete(queue_name))
        for i in range(0, len(keys), 1000):
            deleted += int(await redis.delete(*keys[i : i + 1000]))
    finally:
        await redis.aclose()
    return deleted


def _tail(log: Path, lines: int = 30) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


async def _stop(proc: asyncio.subprocess.Process) -> None:
    # The process leads its own group: uvicorn's worker processes go with their supervisor.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        await asyncio.wait_for(proc.wait(), timeout=15)
    except TimeoutError:
        pass
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    await proc.wait()


@asynccontextmanager
async def serving(
    args: Sequence[str], health_url: str, env: dict[str, str], log: Path
) -> AsyncIterator[None]:
    """Run a server until the block ends; its output goes to `log` (access logs would drown
    the report), whose tail is shown if it does not come up."""
    with log.open("ab") as out:
        proc = await asyncio.create_subprocess_exec(
            *args,
            env={**os.environ, **env},
            stdout=out,
            stderr=out,
            start_new_session=True,
        )
    try:
        async with httpx.AsyncClient() as client:
            for _ in range(300):
                if proc.returncode is not None:
                    break
                with contextlib.suppress(httpx.TransportError):
                    if (await client.get(health_url)).status_code == 200:
                        break
                await asyncio.sleep(0.05)
            else:
                raise RuntimeError(f"{' '.join(args[:4])} did not come up:\n{_tail(log)}")
        if proc.returncode is not None:
            raise RuntimeError(f"{' '.join(args[:4])} exited {proc.returncode}:\n{_tail(log)}")
        yield
    finally:
        await _stop(proc)
