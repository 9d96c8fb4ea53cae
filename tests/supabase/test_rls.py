"""Row level security: the rules the matrix (test_rls_matrix.py) cannot express, as PostgREST
would run the request. Two tenants (workspaces) each have an owner, an admin and an agent, plus
one row in every table.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest

from tests.fixtures.postgres import acting_as
from tests.supabase.tenancy import (
    ROLES,
    Tenant,
    claims_for,
    create_tenant,
    create_user,
    create_workspace,
    random_suffix,
)


@dataclass(frozen=True)
class Actor:
    name: str  # owner, admin, agent or anon
    role: str  # the database role PostgREST would switch to
    claims: dict[str, Any]


def actors_of(tenant: Tenant) -> list[Actor]:
    members = [Actor(r, "authenticated", claims_for(tenant.user(r))) for r in ROLES]
    return [*members, Actor("anon", "anon", {})]


@pytest.fixture(scope="module")
async def tenants(conn: asyncpg.Connection) -> tuple[Tenant, Tenant]:
    return await create_tenant(conn), await create_tenant(conn)


# ---------------------------------------------------------------------------------------------
# Credentials
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["owner", "admin", "agent", "anon"])
async def test_credentials_are_unreadable_through_the_api_roles(
    conn: asyncpg.Connection, tenants: tuple[Tenant, Tenant], role: str
) -> None:
    home, _ = tenants
    actor = next(a for a in actors_of(home) if a.name == role)
    async with acting_as(conn, actor.role, actor.claims):
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied"):
            await conn.fetch(
                "select access_token from private.whatsapp_channel_credentials"
                " where channel_id = $1",
                home.channel_id,
            )


async def test_service_role_reads_credentials_and_every_workspace(
    conn: asyncpg.Connection, tenants: tuple[Tenant, Tenant]
) -> None:
    home, other = tenants
    async with acting_as(conn, "service_role"):
        token = await conn.fetchval(
            "select access_token from private.whatsapp_channel_credentials where channel_id = $1",
            home.channel_id,
        )
        seen = await conn.fetchval(
            "select count(*) from public.conversations where id = any($1::uuid[])",
            [home.conversation_id, other.conversation_id],
        )
    assert token == "token-secret"
    assert seen == 2


# ---------------------------------------------------------------------------------------------
# Rules the matrix cannot express
# ---------------------------------------------------------------------------------------------


async def test_a_member_toggles_only_is_online_on_their_own_team_rows(
    conn: asyncpg.Connection, tenants: tuple[Tenant, Tenant]
) -> None:
    home, _ = tenants
    claims = claims_for(home.agent)
    own = "update public.team_members set {} where team_id = $1 and user_id = $2"
    async with acting_as(conn, "authenticated", claims):
        status = await conn.execute(own.format("is_online = true"), home.team_id, home.agent)
        assert status == "UPDATE 1"
    for change in (
        "last_assigned_at = now()",
        "max_open_handoffs = 99",
        f"user_id = '{home.member}'",
    ):
        async with acting_as(conn, "authenticated", claims):
            # last_assigned_at is refused by the column grants, the others by the guard.
            with pytest.raises(
                asyncpg.InsufficientPrivilegeError, match=r"only is_online|permission denied"
            ):
                await conn.execute(own.format(change), home.team_id, home.agent)


async def test_a_member_cannot_move_their_team_row_to_another_team(
    conn: asyncpg.Connection, tenants: tuple[Tenant, Tenant]
) -> None:
    home, other = tenants
    async with acting_as(conn, "authenticated", claims_for(home.agent)):
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute(
                "update public.team_members set team_id = $1 where team_id = $2 and user_id = $3",
                other.team_id,
                home.team_id,
                home.agent,
            )


async def test_an_admin_may_change_other_members_team_rows(
    conn: asyncpg.Connection, tenants: tuple[Tenant, Tenant]
) -> None:
    home, _ = tenants
    async with acting_as(conn, "authenticated", claims_for(home.admin)):
        status = await conn.execute(
            "update public.team_members set max_open_handoffs = 3, is_online = true where id = $1",
            home.team_member_id,
        )
    assert status == "UPDATE 1"


async def test_only_an_owner_grants_or_touches_the_owner_role(
    conn: asyncpg.Connection, tenants: tuple[Tenant, Tenant]
) -> None:
    home, _ = tenants
    promote = "update public.workspace_members set role = 'owner' where id = $1"
    async with acting_as(conn, "authenticated", claims_for(home.admin)):
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute(promote, home.membership_id)
    async with acting_as(conn, "authenticated", claims_for(home.admin)):
        demote_owner = await conn.execute(
            "update public.workspace_members set role = 'agent'"
            " where workspace_id = $1 and user_id = $2",
            home.workspace_id,
            home.owner,
        )
        assert demote_owner == "UPDATE 0"
    async with acting_as(conn, "authenticated", claims_for(home.owner)):
        assert await conn.execute(promote, home.membership_id) == "UPDATE 1"


async def test_a_member_may_leave_but_owner_memberships_stay(
    conn: asyncpg.Connection, tenants: tuple[Tenant, Tenant]
) -> None:
    home, _ = tenants
    leave = "delete from public.workspace_members where workspace_id = $1 and user_id = $2"
    for actor, leaving, expected in (
        (home.agent, home.agent, "DELETE 1"),
        (home.admin, home.admin, "DELETE 1"),
        (home.owner, home.owner, "DELETE 0"),
        (home.admin, home.owner, "DELETE 0"),
    ):
        async with acting_as(conn, "authenticated", claims_for(actor)):
            assert await conn.execute(leave, home.workspace_id, leaving) == expected


async def test_creating_a_workspace_makes_the_creator_its_owner(
    conn: asyncpg.Connection,
) -> None:
    user = await create_user(conn)
    async with acting_as(conn, "authenticated", claims_for(user)):
        workspace_id = await conn.fetchval(
            "insert into public.workspaces (name, slug, owner_id) values ('Mine', $1, $2)"
            " returning id",
            "ws-" + random_suffix(),
            user,
        )
        role = await conn.fetchval(
            "select role from public.workspace_members where workspace_id = $1 and user_id = $2",
            workspace_id,
            user,
        )
        admin = await conn.fetchval("select private.is_workspace_admin($1)", workspace_id)
    assert role == "owner"
    assert admin is True


async def test_tasks_rules_for_agents(
    conn: asyncpg.Connection, tenants: tuple[Tenant, Tenant]
) -> None:
    home, _ = tenants
    claims = claims_for(home.agent)
    insert = "insert into public.tasks (workspace_id, title, created_by, assigned_to)"
    insert += " values ($1, 'T', $2, $3) returning id"
    # An agent creates tasks as themselves or as the system, never as someone else.
    async with acting_as(conn, "authenticated", claims):
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.fetchval(insert, home.workspace_id, home.admin, None)
    for created_by, assigned_to in ((home.agent, home.admin), (None, None), (None, home.agent)):
        async with acting_as(conn, "authenticated", claims):
            task_id = await conn.fetchval(insert, home.workspace_id, created_by, assigned_to)
            status = await conn.execute(
                "update public.tasks set status = 'completed' where id = $1", task_id
            )
            assert status == "UPDATE 1", (created_by, assigned_to)


@pytest.mark.parametrize("status", ["unroutable", "processed"])
async def test_raw_webhook_events_are_visible_to_no_member(
    conn: asyncpg.Connection, tenants: tuple[Tenant, Tenant], status: str
) -> None:
    home, _ = tenants
    event_id = await conn.fetchval(
        "insert into public.whatsapp_webhook_events (workspace_id, provider, payload, status)"
        " values ($1, 'meta', $2::jsonb, $3) returning id",
        home.workspace_id if status == "processed" else None,
        json.dumps({"entry": []}),
        status,
    )
    for user in (home.owner, home.admin):
        async with acting_as(conn, "authenticated", claims_for(user)):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.fetchval(
                    "select count(*) from public.whatsapp_webhook_events where id = $1", event_id
                )


async def test_a_user_without_claims_sees_nothing(
    conn: asyncpg.Connection, tenants: tuple[Tenant, Tenant]
) -> None:
    home, _ = tenants
    async with acting_as(conn, "authenticated"):
        seen = await conn.fetchval(
            "select (select count(*) from public.workspaces where id = $1)"
            " + (select count(*) from public.conversations where workspace_id = $1)",
            home.workspace_id,
        )
    assert seen == 0


async def test_workspaces_of_other_owners_cannot_be_claimed(
    conn: asyncpg.Connection, tenants: tuple[Tenant, Tenant]
) -> None:
    home, other = tenants
    async with acting_as(conn, "authenticated", claims_for(home.owner)):
        status = await conn.execute(
            "update public.workspaces set owner_id = $1 where id = $2",
            home.owner,
            other.workspace_id,
        )
    assert status == "UPDATE 0"
    mine = await create_workspace(conn, home.owner)
    async with acting_as(conn, "authenticated", claims_for(home.owner)):
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute(
                "update public.workspaces set owner_id = $1 where id = $2", other.owner, mine
            )
