"""Tenants for tests and benchmarks: the rows the CRM's sign-up and settings screens would write.

A workspace comes with its owner (an auth user), one WhatsApp channel and, on request, the
channel's credentials, the agent config, more members and a team. Everything is written over a
superuser connection in one transaction, a savepoint when the caller has a transaction open, so
what the caller adds to the workspace commits (or rolls back) with it.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import asyncpg
import asyncpg.pool

# A plain or a pooled connection (a pool hands out proxies).
Connection = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy


@dataclass(frozen=True)
class Credentials:
    """A row of private.whatsapp_channel_credentials; None leaves a column null (the bridge then
    falls back to its environment)."""

    access_token: str | None = None
    api_key: str | None = None


@dataclass(frozen=True)
class Member:
    """A user added to the workspace besides its owner."""

    role: str = "agent"  # owner, admin or agent (the table checks)
    # In the workspace's team (`create_workspace(team=...)`), online or not; None: in no team.
    online: bool | None = None


@dataclass(frozen=True)
class Workspace:
    id: uuid.UUID
    name: str
    slug: str
    owner_id: uuid.UUID
    channel_id: uuid.UUID
    phone_number_id: str
    provider: str
    members: tuple[uuid.UUID, ...]  # the user ids of `members`, in the order they were asked for
    team_id: uuid.UUID | None  # the team asked for, if one was


def random_phone_number_id() -> str:
    """Sixteen digits, as Meta's phone number ids look, unique across runs."""
    return str(10**15 + uuid.uuid4().int % 10**14)


async def create_user(conn: Connection) -> uuid.UUID:
    """An auth user as Supabase Auth signs one up (audience and role `authenticated`)."""
    user_id = uuid.uuid4()
    await conn.execute(
        "insert into auth.users (id, aud, role, email) values ($1, 'authenticated',"
        " 'authenticated', $2)",
        user_id,
        f"{user_id.hex}@example.test",
    )
    return user_id


async def add_workspace(conn: Connection, name: str, owner_id: uuid.UUID) -> uuid.UUID:
    """The workspace row alone, owned by an existing user (its insert trigger makes them the
    owner member)."""
    workspace_id = uuid.uuid4()
    await conn.execute(
        "insert into public.workspaces (id, name, slug, owner_id) values ($1, $2, $3, $4)",
        workspace_id,
        name,
        _slug(name, workspace_id),
        owner_id,
    )
    return workspace_id


async def create_workspace(
    conn: Connection,
    name: str,
    *,
    owner_id: uuid.UUID | None = None,
    provider: str = "meta",
    phone_number_id: str | None = None,
    api_base_url: str | None = None,
    credentials: Credentials | None = None,
    agent: Mapping[str, object] | None = None,
    members: Sequence[Member] = (),
    team: str | None = None,
) -> Workspace:
    """A workspace with its owner (a new user unless `owner_id` is given) and one channel.

    `credentials`: the channel's secrets (none: no credentials row). `agent`: columns of
    public.workspace_agent_config (none: no row, the table's defaults apply). `members`: users
    added with their role; those with an `online` flag also join the team named `team`, which is
    created even if nobody joins it.
    """
    if team is None and any(m.online is not None for m in members):
        raise ValueError("members with an online flag need a team")
    columns = dict(agent or {})
    for column in columns:
        # Column names go into the SQL text; values are always parameters.
        if not column.isidentifier():
            raise ValueError(f"not a column name: {column!r}")
    pnid = random_phone_number_id() if phone_number_id is None else phone_number_id
    async with conn.transaction():
        owner = await create_user(conn) if owner_id is None else owner_id
        workspace_id = await add_workspace(conn, name, owner)
        channel_id = uuid.uuid4()
        await conn.execute(
            "insert into public.whatsapp_channels (id, workspace_id, phone_number_id, provider,"
            " api_base_url) values ($1, $2, $3, $4, $5)",
            channel_id,
            workspace_id,
            pnid,
            provider,
            api_base_url,
        )
        if credentials is not None:
            await conn.execute(
                "insert into private.whatsapp_channel_credentials (channel_id, access_token,"
                " api_key) values ($1, $2, $3)",
                channel_id,
                credentials.access_token,
                credentials.api_key,
            )
        if agent is not None:
            await _agent_config(conn, workspace_id, columns)
        member_ids, team_id = await _members(conn, workspace_id, members, team)
    return Workspace(
        id=workspace_id,
        name=name,
        slug=_slug(name, workspace_id),
        owner_id=owner,
        channel_id=channel_id,
        phone_number_id=pnid,
        provider=provider,
        members=member_ids,
        team_id=team_id,
    )


def _slug(name: str, workspace_id: uuid.UUID) -> str:
    return f"{re.sub(r'[^a-z0-9]+', '-', name.lower()).strip('-')}-{workspace_id}"


async def _agent_config(
    conn: Connection, workspace_id: uuid.UUID, columns: dict[str, object]
) -> None:
    names = "".join(f", {name}" for name in columns)
    params = "".join(f", ${i + 2}" for i in range(len(columns)))
    await conn.execute(
        f"insert into public.workspace_agent_config (workspace_id{names}) values ($1{params})",
        workspace_id,
        *columns.values(),
    )


async def _members(
    conn: Connection, workspace_id: uuid.UUID, members: Sequence[Member], team: str | None
) -> tuple[tuple[uuid.UUID, ...], uuid.UUID | None]:
    team_id: uuid.UUID | None = None
    if team is not None:
        team_id = await conn.fetchval(
            "insert into public.teams (workspace_id, name) values ($1, $2) returning id",
            workspace_id,
            team,
        )
    ids: list[uuid.UUID] = []
    for member in members:
        user_id = await create_user(conn)
        await conn.execute(
            "insert into public.workspace_members (workspace_id, user_id, role)"
            " values ($1, $2, $3)",
            workspace_id,
            user_id,
            member.role,
        )
        if member.online is not None:
            await conn.execute(
                "insert into public.team_members (team_id, user_id, is_online) values ($1, $2, $3)",
                team_id,
                user_id,
                member.online,
            )
        ids.append(user_id)
    return tuple(ids), team_id
