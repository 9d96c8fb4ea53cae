"""Builders for test tenants: users, workspaces, teams and one row in every tenant table.

Everything is written by the superuser connection and committed, with random ids, so tests
never collide with each other or with the demo seed. Users, workspaces, their channel, members
and team come from devstack.workspaces, as every other test's and benchmark's do.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from devstack import workspaces

ROLES = ("owner", "admin", "agent")


def claims_for(user_id: UUID) -> dict[str, Any]:
    """The JWT claims PostgREST would set for a signed-in user."""
    return {"sub": str(user_id), "aud": "authenticated"}


def random_phone() -> str:
    return "57" + str(uuid.uuid4().int)[:10]


def random_suffix() -> str:
    return uuid.uuid4().hex[:12]


async def create_user(conn: asyncpg.Connection) -> UUID:
    return await workspaces.create_user(conn)


async def create_workspace(conn: asyncpg.Connection, owner_id: UUID) -> UUID:
    """A workspace owned by `owner_id` (the insert trigger makes them its owner member), with no
    channel."""
    return await workspaces.add_workspace(conn, f"Workspace {random_suffix()}", owner_id)


async def add_member(
    conn: asyncpg.Connection, workspace_id: UUID, user_id: UUID, role: str
) -> None:
    await conn.execute(
        "insert into public.workspace_members (workspace_id, user_id, role) values ($1, $2, $3)",
        workspace_id,
        user_id,
        role,
    )


async def create_member(conn: asyncpg.Connection, workspace_id: UUID, role: str = "agent") -> UUID:
    user_id = await create_user(conn)
    await add_member(conn, workspace_id, user_id, role)
    return user_id


async def create_team(conn: asyncpg.Connection, workspace_id: UUID) -> UUID:
    team_id: UUID = await conn.fetchval(
        "insert into public.teams (workspace_id, name) values ($1, $2) returning id",
        workspace_id,
        f"Team {random_suffix()}",
    )
    return team_id


async def add_team_member(
    conn: asyncpg.Connection,
    team_id: UUID,
    user_id: UUID,
    *,
    online: bool = True,
    max_open_handoffs: int | None = None,
    last_assigned_at: datetime | None = None,
) -> UUID:
    row_id: UUID = await conn.fetchval(
        "insert into public.team_members"
        " (team_id, user_id, is_online, max_open_handoffs, last_assigned_at)"
        " values ($1, $2, $3, $4, $5) returning id",
        team_id,
        user_id,
        online,
        max_open_handoffs,
        last_assigned_at,
    )
    return row_id


async def create_conversation(conn: asyncpg.Connection, workspace_id: UUID) -> UUID:
    conversation_id: UUID = await conn.fetchval(
        "insert into public.conversations (workspace_id, phone, phone_number_id)"
        " values ($1, $2, $3) returning id",
        workspace_id,
        random_phone(),
        "pnid-" + random_suffix(),
    )
    return conversation_id


@dataclass(frozen=True)
class Tenant:
    """A workspace with a user per role, an outsider, and one row in every tenant table."""

    workspace_id: UUID
    owner: UUID
    admin: UUID
    agent: UUID
    member: UUID  # another agent: owns the rows that are "someone else's" for `agent`
    outsider: UUID  # a user who belongs to no workspace
    membership_id: UUID  # `member`'s workspace_members row
    channel_id: UUID
    contact_id: UUID
    conversation_id: UUID
    message_id: UUID
    team_id: UUID
    team_member_id: UUID  # `member`'s team_members row
    task_id: UUID  # assigned to `member`, created by the system
    session_id: UUID
    turn_id: UUID
    event_id: UUID

    def user(self, role: str) -> UUID:
        return {"owner": self.owner, "admin": self.admin, "agent": self.agent}[role]


async def create_tenant(conn: asyncpg.Connection) -> Tenant:
    suffix = random_suffix()
    workspace = await workspaces.create_workspace(
        conn,
        f"Workspace {suffix}",
        credentials=workspaces.Credentials(access_token="token-secret", api_key="key-secret"),
        agent={"agent_enabled": True},
        members=[
            workspaces.Member("admin"),
            workspaces.Member("agent", online=False),
            workspaces.Member("agent", online=True),
        ],
        team=f"Team {suffix}",
    )
    workspace_id, owner, channel_id = workspace.id, workspace.owner_id, workspace.channel_id
    admin, agent, member = workspace.members
    team_id = workspace.team_id
    assert team_id is not None
    outsider = await create_user(conn)
    membership_id: UUID = await conn.fetchval(
        "select id from public.workspace_members where workspace_id = $1 and user_id = $2",
        workspace_id,
        member,
    )
    team_member_id: UUID = await conn.fetchval(
        "select id from public.team_members where team_id = $1 and user_id = $2",
        team_id,
        member,
    )
    contact_id: UUID = await conn.fetchval(
        "insert into public.contacts (workspace_id, name, phone) values ($1, 'Ana', $2)"
        " returning id",
        workspace_id,
        random_phone(),
    )
    conversation_id: UUID = await conn.fetchval(
        "insert into public.conversations (workspace_id, channel_id, contact_id, phone,"
        " phone_number_id) values ($1, $2, $3, $4, 'pnid') returning id",
        workspace_id,
        channel_id,
        contact_id,
        random_phone(),
    )
    message_id: UUID = await conn.fetchval(
        "insert into public.messages (workspace_id, conversation_id, wamid, direction, type,"
        " content) values ($1, $2, $3, 'inbound', 'text', $4::jsonb) returning id",
        workspace_id,
        conversation_id,
        "wamid." + random_suffix(),
        json.dumps({"body": "hola"}),
    )
    task_id: UUID = await conn.fetchval(
        "insert into public.tasks (workspace_id, title, conversation_id, contact_id, assigned_to,"
        " type, priority) values ($1, 'Handoff', $2, $3, $4, 'handoff', 'high') returning id",
        workspace_id,
        conversation_id,
        contact_id,
        member,
    )
    session_id: UUID = await conn.fetchval(
        "insert into public.agent_sessions (workspace_id, agent_id, conversation_id, contact_id)"
        " values ($1, 'somnio-sales-v1', $2, $3) returning id",
        workspace_id,
        conversation_id,
        contact_id,
    )
    turn_id: UUID = await conn.fetchval(
        "insert into public.agent_turns (session_id, turn_number, role, content)"
        " values ($1, 1, 'user', 'hola') returning id",
        session_id,
    )
    event_id: UUID = await conn.fetchval(
        "insert into public.whatsapp_webhook_events (workspace_id, provider, payload, status)"
        " values ($1, 'meta', '{}'::jsonb, 'processed') returning id",
        workspace_id,
    )
    return Tenant(
        workspace_id=workspace_id,
        owner=owner,
        admin=admin,
        agent=agent,
        member=member,
        outsider=outsider,
        membership_id=membership_id,
        channel_id=channel_id,
        contact_id=contact_id,
        conversation_id=conversation_id,
        message_id=message_id,
        team_id=team_id,
        team_member_id=team_member_id,
        task_id=task_id,
        session_id=session_id,
        turn_id=turn_id,
        event_id=event_id,
    )
