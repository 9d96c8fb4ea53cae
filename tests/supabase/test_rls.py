"""Row level security: who may read and write which rows, as PostgREST would run the request.

Two tenants (workspaces) each have an owner, an admin and an agent, plus one row in every
table. Every role tries every operation on every table, in its own workspace and in the other
one; nothing crosses the workspace boundary, and inside it the rules below hold.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal
from uuid import UUID

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
    random_phone,
    random_suffix,
)

Op = Literal["select", "insert", "update", "delete"]
OPS: tuple[Op, ...] = ("select", "insert", "update", "delete")

EVERYONE = frozenset(ROLES)
ADMINS = frozenset({"owner", "admin"})
OWNER = frozenset({"owner"})
NOBODY: frozenset[str] = frozenset()


@dataclass(frozen=True)
class TableRules:
    """What each role may do with one table's rows in its own workspace."""

    table: str
    row: Callable[[Tenant], UUID]  # the existing row tried by select/update/delete
    update_set: str  # a SET clause that leaves the row valid
    insert_sql: str
    insert_args: Callable[[Tenant], tuple[Any, ...]]
    select: frozenset[str]
    insert: frozenset[str]
    update: frozenset[str]
    delete: frozenset[str]
    key: str = "id"
    prepare_insert: str | None = None  # run as superuser first, with the workspace id as $1

    def allowed(self, op: Op) -> frozenset[str]:
        allowed: frozenset[str] = getattr(self, op)
        return allowed


RULES: tuple[TableRules, ...] = (
    TableRules(
        table="workspaces",
        row=lambda t: t.workspace_id,
        update_set="name = name",
        insert_sql="insert into public.workspaces (name, slug, owner_id) values ('W', $1, $2)",
        insert_args=lambda t: ("ws-" + random_suffix(), t.owner),
        select=EVERYONE,
        insert=OWNER,  # anyone may create a workspace, but only one they own
        update=OWNER,
        delete=OWNER,
    ),
    TableRules(
        table="workspace_members",
        row=lambda t: t.membership_id,
        update_set="role = role",
        insert_sql="insert into public.workspace_members (workspace_id, user_id, role)"
        " values ($1, $2, 'agent')",
        insert_args=lambda t: (t.workspace_id, t.outsider),
        select=EVERYONE,
        insert=ADMINS,
        update=ADMINS,
        delete=ADMINS,
    ),
    TableRules(
        table="whatsapp_channels",
        row=lambda t: t.channel_id,
        update_set="display_phone_number = display_phone_number",
        insert_sql="insert into public.whatsapp_channels (workspace_id, phone_number_id)"
        " values ($1, $2)",
        insert_args=lambda t: (t.workspace_id, "pnid-" + random_suffix()),
        select=EVERYONE,
        insert=ADMINS,
        update=ADMINS,
        delete=ADMINS,
    ),
    TableRules(
        table="contacts",
        row=lambda t: t.contact_id,
        update_set="name = name",
        insert_sql="insert into public.contacts (workspace_id, name, phone) values ($1, 'N', $2)",
        insert_args=lambda t: (t.workspace_id, random_phone()),
        select=EVERYONE,
        insert=EVERYONE,
        update=EVERYONE,
        delete=EVERYONE,
    ),
    TableRules(
        table="teams",
        row=lambda t: t.team_id,
        update_set="name = name",
        insert_sql="insert into public.teams (workspace_id, name) values ($1, $2)",
        insert_args=lambda t: (t.workspace_id, "T " + random_suffix()),
        select=EVERYONE,
        insert=ADMINS,
        update=ADMINS,
        delete=ADMINS,
    ),
    TableRules(
        table="team_members",
        row=lambda t: t.team_member_id,  # another member's row: an agent may not touch it
        update_set="is_online = not is_online",
        insert_sql="insert into public.team_members (team_id, user_id) values ($1, $2)",
        insert_args=lambda t: (t.team_id, t.outsider),
        select=EVERYONE,
        insert=ADMINS,
        update=ADMINS,
        delete=ADMINS,
    ),
    TableRules(
        table="conversations",
        row=lambda t: t.conversation_id,
        update_set="is_read = not is_read",
        insert_sql="insert into public.conversations (workspace_id, phone, phone_number_id)"
        " values ($1, $2, 'pnid')",
        insert_args=lambda t: (t.workspace_id, random_phone()),
        select=EVERYONE,
        insert=EVERYONE,
        update=EVERYONE,
        delete=ADMINS,
    ),
    TableRules(
        table="messages",
        row=lambda t: t.message_id,
        update_set="content = content",
        insert_sql="insert into public.messages (workspace_id, conversation_id, direction, type)"
        " values ($1, $2, 'outbound', 'text')",
        insert_args=lambda t: (t.workspace_id, t.conversation_id),
        select=EVERYONE,
        insert=EVERYONE,
        update=EVERYONE,
        delete=ADMINS,
    ),
    TableRules(
        table="tasks",
        row=lambda t: t.task_id,  # assigned to another member, created by the system
        update_set="title = title",
        insert_sql="insert into public.tasks (workspace_id, title) values ($1, 'T')",
        insert_args=lambda t: (t.workspace_id,),
        select=EVERYONE,
        insert=EVERYONE,
        update=ADMINS,
        delete=ADMINS,
    ),
    TableRules(
        table="workspace_agent_config",
        key="workspace_id",
        row=lambda t: t.workspace_id,
        update_set="agent_enabled = not agent_enabled",
        insert_sql="insert into public.workspace_agent_config (workspace_id) values ($1)",
        insert_args=lambda t: (t.workspace_id,),
        prepare_insert="delete from public.workspace_agent_config where workspace_id = $1",
        select=EVERYONE,
        insert=ADMINS,
        update=ADMINS,
        delete=ADMINS,
    ),
    TableRules(
        table="agent_sessions",
        row=lambda t: t.session_id,
        update_set="current_mode = current_mode",
        insert_sql="insert into public.agent_sessions (workspace_id, agent_id, conversation_id,"
        " status) values ($1, 'other-agent', $2, 'closed')",
        insert_args=lambda t: (t.workspace_id, t.conversation_id),
        select=EVERYONE,
        insert=EVERYONE,
        update=EVERYONE,
        delete=NOBODY,
    ),
    TableRules(
        table="agent_turns",
        row=lambda t: t.turn_id,
        update_set="content = content",
        insert_sql="insert into public.agent_turns (workspace_id, session_id, turn_number, role,"
        " content) values ($1, $2, 2, 'assistant', 'x')",
        insert_args=lambda t: (t.workspace_id, t.session_id),
        select=EVERYONE,
        insert=EVERYONE,
        update=NOBODY,
        delete=NOBODY,
    ),
    TableRules(
        table="whatsapp_webhook_events",
        row=lambda t: t.event_id,
        update_set="status = status",
        insert_sql="insert into public.whatsapp_webhook_events (workspace_id, provider, payload)"
        " values ($1, 'meta', '{}'::jsonb)",
        insert_args=lambda t: (t.workspace_id,),
        select=ADMINS,
        insert=NOBODY,
        update=NOBODY,
        delete=NOBODY,
    ),
)

# The tables the frontend depends on (DESIGN.md, "Contract"), plus the other tenant tables.
CONTRACT_TABLES = {
    "workspaces",
    "workspace_members",
    "contacts",
    "conversations",
    "messages",
    "tasks",
    "teams",
    "team_members",
    "workspace_agent_config",
    "agent_sessions",
    "agent_turns",
    "whatsapp_channels",
    "whatsapp_webhook_events",
}


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


async def _run(conn: asyncpg.Connection, op: Op, rules: TableRules, target: Tenant) -> int:
    """Run one operation; return how many rows it saw or changed."""
    table, key = f"public.{rules.table}", rules.key
    if op == "select":
        count: int = await conn.fetchval(
            f"select count(*) from {table} where {key} = $1", rules.row(target)
        )
        return count
    if op == "insert":
        status = await conn.execute(rules.insert_sql, *rules.insert_args(target))
    elif op == "update":
        status = await conn.execute(
            f"update {table} set {rules.update_set} where {key} = $1", rules.row(target)
        )
    else:
        status = await conn.execute(f"delete from {table} where {key} = $1", rules.row(target))
    return int(status.rsplit(" ", 1)[-1])


async def attempt(
    conn: asyncpg.Connection, actor: Actor, op: Op, rules: TableRules, target: Tenant
) -> bool:
    """True when the operation reached the row; False for 0 rows or 42501. Rolled back."""
    outer = conn.transaction()
    await outer.start()
    try:
        if op == "insert" and rules.prepare_insert:
            await conn.execute(rules.prepare_insert, target.workspace_id)
        async with acting_as(conn, actor.role, actor.claims):
            try:
                return await _run(conn, op, rules, target) > 0
            except asyncpg.InsufficientPrivilegeError:
                return False
    finally:
        await outer.rollback()


def test_every_contract_table_has_rules() -> None:
    assert {r.table for r in RULES} == CONTRACT_TABLES


@pytest.mark.parametrize("rules", RULES, ids=lambda r: r.table)
async def test_access_matrix(
    conn: asyncpg.Connection, tenants: tuple[Tenant, Tenant], rules: TableRules
) -> None:
    home, other = tenants
    wrong: list[str] = []
    for actor in actors_of(home):
        for target, where in ((home, "own"), (other, "other")):
            for op in OPS:
                expected = where == "own" and actor.name in rules.allowed(op)
                got = await attempt(conn, actor, op, rules, target)
                if got != expected:
                    verdict = "allowed" if got else "denied"
                    wrong.append(f"{actor.name} {op} in {where} workspace was {verdict}")
    assert not wrong, f"{rules.table}: " + "; ".join(wrong)


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
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match="only is_online"):
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
            "update public.team_members set max_open_handoffs = 3, last_assigned_at = null"
            " where id = $1",
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


async def test_unrouted_webhook_events_are_visible_to_no_member(
    conn: asyncpg.Connection, tenants: tuple[Tenant, Tenant]
) -> None:
    home, _ = tenants
    event_id = await conn.fetchval(
        "insert into public.whatsapp_webhook_events (provider, payload, status)"
        " values ('meta', $1::jsonb, 'unroutable') returning id",
        json.dumps({"entry": []}),
    )
    async with acting_as(conn, "authenticated", claims_for(home.owner)):
        seen = await conn.fetchval(
            "select count(*) from public.whatsapp_webhook_events where id = $1", event_id
        )
    assert seen == 0


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
