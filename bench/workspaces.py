"""The workspace every benchmark writes into: an owner, the workspace and its Meta channel."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import asyncpg
import asyncpg.pool

# A plain or a pooled connection (a pool hands out proxies).
Connection = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy


@dataclass(frozen=True)
class BenchWorkspace:
    id: uuid.UUID
    channel_id: uuid.UUID
    phone_number_id: str


async def create_workspace(conn: Connection, name: str) -> BenchWorkspace:
    """Inside the caller's transaction, so what it adds to the workspace commits with it."""
    owner, workspace, channel = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    pnid = str(10**15 + uuid.uuid4().int % 10**14)
    await conn.execute(
        "insert into auth.users (id, email) values ($1, $2)", owner, f"{owner}@bench.local"
    )
    await conn.execute(
        "insert into public.workspaces (id, name, slug, owner_id) values ($1, $2, $3, $4)",
        workspace,
        name,
        f"{name.lower()}-{workspace}",
        owner,
    )
    await conn.execute(
        "insert into public.whatsapp_channels (id, workspace_id, phone_number_id, provider)"
        " values ($1, $2, $3, 'meta')",
        channel,
        workspace,
        pnid,
    )
    return BenchWorkspace(workspace, channel, pnid)
