"""Routing and provenance columns are the bridge's: a member of the workspace, whatever their
role, cannot write them through the API, while what the inbox needs stays writable. Each attack
is run as PostgREST would run it (the `authenticated` role with the member's claims)."""

from __future__ import annotations

import asyncpg
import pytest

from tests.fixtures.postgres import acting_as
from tests.supabase.tenancy import Tenant, claims_for, create_tenant, random_suffix


@pytest.fixture(scope="module")
async def tenants(conn: asyncpg.Connection) -> tuple[Tenant, Tenant]:
    return await create_tenant(conn), await create_tenant(conn)


# (table, SET clause, the row's id attribute on Tenant); every one is refused to an owner too.
REFUSED_UPDATES = [
    ("conversations", "phone_number_id = 'someone-elses'", "conversation_id"),
    ("conversations", "channel_id = null", "conversation_id"),
    ("conversations", "workspace_id = workspace_id", "conversation_id"),
    ("conversations", "phone = '573000000000'", "conversation_id"),
    ("conversations", "bsuid = 'CO.123'", "conversation_id"),
    ("conversations", "last_message_preview = 'x'", "conversation_id"),
    ("messages", "wamid = 'wamid.claimed'", "message_id"),
    ("messages", "direction = 'outbound'", "message_id"),
    ("messages", "sent_by_agent = true", "message_id"),
    ("messages", "status = 'read'", "message_id"),
    ("messages", "status_timestamp = now()", "message_id"),
    ("messages", "processed_by_agent = false", "message_id"),
    ("messages", "outbox_kind = 'reply'", "message_id"),
    ("messages", "send_attempts = 0", "message_id"),
    ("messages", "content = '{}'::jsonb", "message_id"),
    ("messages", "conversation_id = conversation_id", "message_id"),
    ("tasks", "created_by = null", "task_id"),
    ("tasks", "created_by_bridge = true", "task_id"),
    ("tasks", "workspace_id = workspace_id", "task_id"),
    ("team_members", "last_assigned_at = null", "team_member_id"),
    ("whatsapp_channels", "api_base_url = 'http://127.0.0.1:9/#'", "channel_id"),
    ("whatsapp_channels", "phone_number_id = phone_number_id", "channel_id"),
]


@pytest.mark.parametrize(
    ("table", "change", "row"), REFUSED_UPDATES, ids=[f"{t}.{c}" for t, c, _ in REFUSED_UPDATES]
)
async def test_an_owner_cannot_write_a_provenance_column(
    conn: asyncpg.Connection, tenants: tuple[Tenant, Tenant], table: str, change: str, row: str
) -> None:
    home, _ = tenants
    async with acting_as(conn, "authenticated", claims_for(home.owner)):
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute(
                f"update public.{table} set {change} where id = $1", getattr(home, row)
            )


async def test_a_member_cannot_claim_a_wamid_with_a_message_of_their_own(
    conn: asyncpg.Connection, tenants: tuple[Tenant, Tenant]
) -> None:
    home, _ = tenants
    async with acting_as(conn, "authenticated", claims_for(home.agent)):
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute(
                "insert into public.messages (workspace_id, conversation_id, wamid, direction,"
                " type, processed_by_agent) values ($1, $2, $3, 'inbound', 'text', false)",
                home.workspace_id,
                home.conversation_id,
                "wamid." + random_suffix(),
            )


async def test_a_member_cannot_create_a_conversation_on_a_number(
    conn: asyncpg.Connection, tenants: tuple[Tenant, Tenant]
) -> None:
    home, other = tenants
    async with acting_as(conn, "authenticated", claims_for(home.owner)):
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute(
                "insert into public.conversations (workspace_id, phone, phone_number_id)"
                " values ($1, '573001112233', $2)",
                home.workspace_id,
                str(other.channel_id),
            )


async def test_an_admin_cannot_choose_where_the_worker_sends(
    conn: asyncpg.Connection, tenants: tuple[Tenant, Tenant]
) -> None:
    home, _ = tenants
    async with acting_as(conn, "authenticated", claims_for(home.admin)):
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute(
                "insert into public.whatsapp_channels (workspace_id, phone_number_id,"
                " api_base_url) values ($1, $2, 'http://attacker.example/#')",
                home.workspace_id,
                "pnid-" + random_suffix(),
            )
    async with acting_as(conn, "authenticated", claims_for(home.admin)):
        status = await conn.execute(
            "insert into public.whatsapp_channels (workspace_id, phone_number_id,"
            " display_phone_number, provider) values ($1, $2, '+57 300', '360dialog')",
            home.workspace_id,
            "pnid-" + random_suffix(),
        )
    assert status == "INSERT 0 1"


async def test_a_member_cannot_author_a_task_as_the_bridge(
    conn: asyncpg.Connection, tenants: tuple[Tenant, Tenant]
) -> None:
    home, _ = tenants
    async with acting_as(conn, "authenticated", claims_for(home.owner)):
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute(
                "insert into public.tasks (workspace_id, title, type, assigned_to,"
                " created_by_bridge) values ($1, 'Handoff', 'handoff', $2, true)",
                home.workspace_id,
                home.member,
            )


# ---------------------------------------------------------------------------------------------
# What the inbox needs keeps working
# ---------------------------------------------------------------------------------------------


async def test_an_agent_works_the_inbox(
    conn: asyncpg.Connection, tenants: tuple[Tenant, Tenant]
) -> None:
    home, _ = tenants
    async with acting_as(conn, "authenticated", claims_for(home.agent)):
        changed = [
            await conn.execute(
                "update public.conversations set agent_conversational = false, agent_crm = true,"
                " assigned_to = $2, team_id = $3, is_read = true, unread_count = 0,"
                " status = 'archived', contact_id = $4, profile_name = 'Ana' where id = $1",
                home.conversation_id,
                home.agent,
                home.team_id,
                home.contact_id,
            ),
            await conn.execute(
                "update public.team_members set is_online = true"
                " where team_id = $1 and user_id = $2",
                home.team_id,
                home.agent,
            ),
        ]
        task_id = await conn.fetchval(
            "insert into public.tasks (workspace_id, title, type, conversation_id, contact_id,"
            " assigned_to, created_by, priority, due_date, description)"
            " values ($1, 'Llamar', 'follow_up', $2, $3, $4, $4, 'high', now(), 'x') returning id",
            home.workspace_id,
            home.conversation_id,
            home.contact_id,
            home.agent,
        )
        changed.append(
            await conn.execute(
                "update public.tasks set status = 'completed', title = 'Llamado' where id = $1",
                task_id,
            )
        )
        completed_at = await conn.fetchval(
            "select completed_at from public.tasks where id = $1", task_id
        )
    assert changed == ["UPDATE 1", "UPDATE 1", "UPDATE 1"]
    assert completed_at is not None


async def test_an_admin_still_manages_teams_and_channels(
    conn: asyncpg.Connection, tenants: tuple[Tenant, Tenant]
) -> None:
    home, _ = tenants
    async with acting_as(conn, "authenticated", claims_for(home.admin)):
        changed = [
            await conn.execute(
                "update public.team_members set max_open_handoffs = 2, is_online = false"
                " where id = $1",
                home.team_member_id,
            ),
            await conn.execute(
                "update public.whatsapp_channels set display_phone_number = '+57 301'"
                " where id = $1",
                home.channel_id,
            ),
            await conn.execute(
                "update public.tasks set assigned_to = $2, status = 'completed' where id = $1",
                home.task_id,
                home.agent,
            ),
            await conn.execute("delete from public.messages where id = $1", home.message_id),
        ]
        remaining = await conn.fetchval(
            "select count(*) from public.messages where conversation_id = $1",
            home.conversation_id,
        )
    assert changed == ["UPDATE 1", "UPDATE 1", "UPDATE 1", "DELETE 1"]
    assert remaining == 0
