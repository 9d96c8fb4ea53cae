"""Triggers, defaults and cascades: the schema keeps its own invariants, whoever writes."""

from __future__ import annotations

import json
from uuid import UUID

import asyncpg

from tests.supabase.tenancy import Tenant, create_tenant

TENANT_TABLES = (
    "workspace_members",
    "whatsapp_channels",
    "contacts",
    "teams",
    "conversations",
    "messages",
    "tasks",
    "workspace_agent_config",
    "agent_sessions",
    "agent_turns",
)


async def count_rows(conn: asyncpg.Connection, workspace_id: UUID) -> dict[str, int]:
    counts: dict[str, int] = {}
    for table in TENANT_TABLES:
        counts[table] = await conn.fetchval(
            f"select count(*) from public.{table} where workspace_id = $1", workspace_id
        )
    return counts


async def test_defaults_are_the_documented_ones_and_timestamps_are_utc_now(
    conn: asyncpg.Connection,
) -> None:
    tenant = await create_tenant(conn)
    async with conn.transaction():
        await conn.execute(
            "delete from public.workspace_agent_config where workspace_id = $1",
            tenant.workspace_id,
        )
        config = await conn.fetchrow(
            "insert into public.workspace_agent_config (workspace_id) values ($1)"
            " returning *, created_at = now() as created_now",
            tenant.workspace_id,
        )
        message = await conn.fetchrow(
            "insert into public.messages (workspace_id, conversation_id, direction, type)"
            " values ($1, $2, 'outbound', 'text')"
            " returning content, status, sent_by_agent, processed_by_agent,"
            " timestamp = now() as timestamp_now, created_at = now() as created_now",
            tenant.workspace_id,
            tenant.conversation_id,
        )
    assert config is not None
    assert message is not None
    assert config["created_now"] is True
    assert config["agent_enabled"] is False
    assert config["conversational_agent_id"] == "somnio-sales-v1"
    assert json.loads(config["crm_agents_enabled"]) == {"order-manager": True}
    assert config["handoff_message"] == "Regálame 1 min, ya te comunico con un asesor"
    assert config["timer_preset"] == "real"
    assert float(config["response_speed"]) == 1.0
    assert config["reply_window_ms"] == 0
    assert config["whatsapp_typing_indicator"] is False
    assert json.loads(message["content"]) == {}
    assert message["status"] is None
    assert (message["sent_by_agent"], message["processed_by_agent"]) == (False, True)
    assert (message["timestamp_now"], message["created_now"]) == (True, True)


async def test_updated_at_follows_every_update(conn: asyncpg.Connection) -> None:
    tenant = await create_tenant(conn)
    await conn.execute(
        "update public.contacts set updated_at = '2000-01-01Z' where id = $1", tenant.contact_id
    )
    async with conn.transaction():
        await conn.execute(
            "update public.contacts set city = 'Cali' where id = $1", tenant.contact_id
        )
        fresh = await conn.fetchval(
            "select updated_at = now() from public.contacts where id = $1", tenant.contact_id
        )
    assert fresh is True


async def test_completed_at_tracks_the_task_status(conn: asyncpg.Connection) -> None:
    tenant = await create_tenant(conn)

    async def state() -> tuple[str, object]:
        row = await conn.fetchrow(
            "select status, completed_at from public.tasks where id = $1", tenant.task_id
        )
        assert row is not None
        return row["status"], row["completed_at"]

    assert await state() == ("pending", None)
    await conn.execute("update public.tasks set status = 'completed' where id = $1", tenant.task_id)
    status, completed_at = await state()
    assert status == "completed"
    assert completed_at is not None
    await conn.execute("update public.tasks set title = 'x' where id = $1", tenant.task_id)
    assert await state() == ("completed", completed_at)
    await conn.execute("update public.tasks set status = 'pending' where id = $1", tenant.task_id)
    assert await state() == ("pending", None)
    born_done = await conn.fetchval(
        "insert into public.tasks (workspace_id, title, status) values ($1, 'T', 'completed')"
        " returning completed_at is not null",
        tenant.workspace_id,
    )
    assert born_done is True


async def test_deleting_a_contact_unlinks_it_everywhere_but_keeps_the_rows(
    conn: asyncpg.Connection,
) -> None:
    tenant = await create_tenant(conn)
    await conn.execute("delete from public.contacts where id = $1", tenant.contact_id)
    row = await conn.fetchrow(
        "select (select contact_id from public.conversations where id = $1) as conversation,"
        " (select workspace_id from public.conversations where id = $1) as workspace,"
        " (select contact_id from public.tasks where id = $2) as task,"
        " (select contact_id from public.agent_sessions where id = $3) as session",
        tenant.conversation_id,
        tenant.task_id,
        tenant.session_id,
    )
    assert row is not None
    assert (row["conversation"], row["task"], row["session"]) == (None, None, None)
    assert row["workspace"] == tenant.workspace_id


async def test_deleting_a_conversation_removes_its_history_and_keeps_its_tasks(
    conn: asyncpg.Connection,
) -> None:
    tenant = await create_tenant(conn)
    await conn.execute("delete from public.conversations where id = $1", tenant.conversation_id)
    row = await conn.fetchrow(
        "select (select count(*) from public.messages where id = $1) as messages,"
        " (select count(*) from public.agent_sessions where id = $2) as sessions,"
        " (select count(*) from public.agent_turns where id = $3) as turns,"
        " (select conversation_id from public.tasks where id = $4) as task_conversation,"
        " (select contact_id from public.tasks where id = $4) as task_contact",
        tenant.message_id,
        tenant.session_id,
        tenant.turn_id,
        tenant.task_id,
    )
    assert row is not None
    assert (row["messages"], row["sessions"], row["turns"]) == (0, 0, 0)
    assert (row["task_conversation"], row["task_contact"]) == (None, tenant.contact_id)


async def test_deleting_a_team_frees_its_conversations(conn: asyncpg.Connection) -> None:
    tenant = await create_tenant(conn)
    await conn.execute(
        "update public.conversations set team_id = $1 where id = $2",
        tenant.team_id,
        tenant.conversation_id,
    )
    await conn.execute("delete from public.teams where id = $1", tenant.team_id)
    team_id = await conn.fetchval(
        "select team_id from public.conversations where id = $1", tenant.conversation_id
    )
    members = await conn.fetchval(
        "select count(*) from public.team_members where team_id = $1", tenant.team_id
    )
    assert (team_id, members) == (None, 0)


async def test_deleting_a_workspace_removes_everything_it_owns(conn: asyncpg.Connection) -> None:
    tenant: Tenant = await create_tenant(conn)
    survivor = await create_tenant(conn)
    before = await count_rows(conn, tenant.workspace_id)
    assert all(before.values()), before
    await conn.execute("delete from public.workspaces where id = $1", tenant.workspace_id)
    assert set((await count_rows(conn, tenant.workspace_id)).values()) == {0}
    leftovers = await conn.fetchrow(
        "select (select count(*) from public.team_members where team_id = $1) as team_members,"
        " (select count(*) from private.whatsapp_channel_credentials where channel_id = $2)"
        " as credentials,"
        " (select workspace_id from public.whatsapp_webhook_events where id = $3) as event_ws",
        tenant.team_id,
        tenant.channel_id,
        tenant.event_id,
    )
    assert leftovers is not None
    # The raw webhook event is kept (it is the intake's record) but no longer routed.
    assert tuple(leftovers) == (0, 0, None)
    assert await count_rows(conn, survivor.workspace_id) == before
