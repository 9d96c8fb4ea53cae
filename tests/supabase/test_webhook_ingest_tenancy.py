"""The intake keeps tenants apart: a raw POST holding several workspaces' numbers is nobody's to
read, a status moves only a message of the channel and provider that reported it, a wamid held
by another workspace never swallows a message, and orphan statuses are capped and expire."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import asyncpg
import pytest

from devstack import workspaces
from tests.fixtures.postgres import acting_as
from tests.supabase.tenancy import claims_for, random_phone


@pytest.fixture(scope="module")
async def tenant_a(conn: asyncpg.Connection) -> workspaces.Workspace:
    return await workspaces.create_workspace(conn, "Tenant A", members=[workspaces.Member("admin")])


@pytest.fixture(scope="module")
async def tenant_b(conn: asyncpg.Connection) -> workspaces.Workspace:
    return await workspaces.create_workspace(conn, "Tenant B", members=[workspaces.Member("admin")])


def wamid() -> str:
    return f"wamid.{uuid.uuid4().hex}"


def inbound(pnid: str, message_id: str, body: str = "hola") -> dict[str, Any]:
    return {
        "direction": "inbound",
        "phone_number_id": pnid,
        "wamid": message_id,
        "phone": random_phone(),
        "type": "text",
        "content": {"body": body},
        "timestamp": str(int(time.time())),
    }


def status(pnid: str, message_id: str, value: str) -> dict[str, Any]:
    return {
        "phone_number_id": pnid,
        "wamid": message_id,
        "status": value,
        "timestamp": str(int(time.time())),
    }


async def ingest(
    conn: asyncpg.Connection,
    messages: list[dict[str, Any]] | None = None,
    statuses: list[dict[str, Any]] | None = None,
    provider: str = "meta",
) -> dict[str, Any]:
    payload = {"object": "whatsapp_business_account", "entry": [], "messages": messages or []}
    async with conn.transaction():
        await conn.execute("set local role service_role")
        raw = await conn.fetchval(
            "select public.ingest_whatsapp_webhook($1, $2::jsonb, $3::jsonb, $4::jsonb)",
            provider,
            json.dumps(payload),
            json.dumps(messages or []),
            json.dumps(statuses or []),
        )
    result: dict[str, Any] = json.loads(raw)
    return result


async def outbound(conn: asyncpg.Connection, tenant: workspaces.Workspace, message_id: str) -> None:
    """A message the worker sent from `tenant`'s channel, recorded as sent."""
    conversation_id = await conn.fetchval(
        "insert into public.conversations (workspace_id, channel_id, phone, phone_number_id)"
        " values ($1, $2, $3, $4) returning id",
        tenant.id,
        tenant.channel_id,
        random_phone(),
        tenant.phone_number_id,
    )
    await conn.execute(
        "insert into public.messages (workspace_id, conversation_id, wamid, direction, type,"
        " status) values ($1, $2, $3, 'outbound', 'text', 'sent')",
        tenant.id,
        conversation_id,
        message_id,
    )


async def message_status(conn: asyncpg.Connection, message_id: str) -> str | None:
    value: str | None = await conn.fetchval(
        "select status from public.messages where wamid = $1", message_id
    )
    return value


# ---------------------------------------------------------------------------------------------
# Raw events
# ---------------------------------------------------------------------------------------------


async def test_a_post_with_two_tenants_numbers_is_readable_by_neither(
    conn: asyncpg.Connection, tenant_a: workspaces.Workspace, tenant_b: workspaces.Workspace
) -> None:
    result = await ingest(
        conn,
        [
            inbound(tenant_a.phone_number_id, wamid(), "mi dirección es calle 1"),
            inbound(tenant_b.phone_number_id, wamid()),
        ],
    )
    assert result["stored"] == 2
    routed_to = await conn.fetchval(
        "select workspace_id from public.whatsapp_webhook_events where id = $1",
        uuid.UUID(result["event_id"]),
    )
    assert routed_to is None
    for tenant in (tenant_a, tenant_b):
        for user in (tenant.owner_id, tenant.members[0]):
            async with acting_as(conn, "authenticated", claims_for(user)):
                with pytest.raises(asyncpg.InsufficientPrivilegeError):
                    await conn.fetchval(
                        "select payload from public.whatsapp_webhook_events where id = $1",
                        uuid.UUID(result["event_id"]),
                    )


async def test_a_post_of_one_tenant_is_still_labelled_with_it(
    conn: asyncpg.Connection, tenant_a: workspaces.Workspace
) -> None:
    result = await ingest(conn, [inbound(tenant_a.phone_number_id, wamid())])
    routed_to = await conn.fetchval(
        "select workspace_id from public.whatsapp_webhook_events where id = $1",
        uuid.UUID(result["event_id"]),
    )
    assert routed_to == tenant_a.id


async def test_the_unrouted_fallback_respects_the_provider(
    conn: asyncpg.Connection, tenant_a: workspaces.Workspace
) -> None:
    # Signed the 360dialog way, naming a Meta channel's number: not that tenant's delivery.
    sent = wamid()
    await outbound(conn, tenant_a, sent)
    result = await ingest(
        conn,
        [inbound(tenant_a.phone_number_id, wamid())],
        [status(tenant_a.phone_number_id, sent, "read")],
        provider="360dialog",
    )
    assert (result["stored"], result["statuses_applied"], result["unroutable"]) == (
        0,
        0,
        [tenant_a.phone_number_id],
    )
    event = await conn.fetchrow(
        "select workspace_id, status from public.whatsapp_webhook_events where id = $1",
        uuid.UUID(result["event_id"]),
    )
    assert event is not None
    assert (event["workspace_id"], event["status"]) == (None, "unroutable")
    assert await message_status(conn, sent) == "sent"


# ---------------------------------------------------------------------------------------------
# Statuses
# ---------------------------------------------------------------------------------------------


async def test_a_status_from_another_tenants_channel_leaves_the_message_alone(
    conn: asyncpg.Connection, tenant_a: workspaces.Workspace, tenant_b: workspaces.Workspace
) -> None:
    sent = wamid()
    await outbound(conn, tenant_a, sent)
    result = await ingest(conn, statuses=[status(tenant_b.phone_number_id, sent, "read")])
    assert (result["statuses_applied"], result["statuses_orphaned"]) == (0, 1)
    assert await message_status(conn, sent) == "sent"

    # The tenant's own channel still moves it, and B's orphan never applies to A's message.
    result = await ingest(conn, statuses=[status(tenant_a.phone_number_id, sent, "delivered")])
    assert result["statuses_applied"] == 1
    assert await message_status(conn, sent) == "delivered"


async def test_an_orphan_applies_only_to_a_message_of_its_own_channel(
    conn: asyncpg.Connection, tenant_a: workspaces.Workspace, tenant_b: workspaces.Workspace
) -> None:
    early = wamid()
    await ingest(conn, statuses=[status(tenant_b.phone_number_id, early, "read")])
    await ingest(conn, statuses=[status(tenant_a.phone_number_id, early, "delivered")])
    # The message then appears on A's channel (an echo of a send from the Business app).
    echo = inbound(tenant_a.phone_number_id, early) | {"direction": "outbound"}
    result = await ingest(conn, [echo])
    assert result["stored"] == 1
    assert await message_status(conn, early) == "delivered"
    left = await conn.fetch(
        "select channel_id from public.message_status_orphans where wamid = $1", early
    )
    assert [r["channel_id"] for r in left] == [tenant_b.channel_id]


async def test_a_wamid_held_by_another_workspace_does_not_swallow_a_message(
    conn: asyncpg.Connection, tenant_a: workspaces.Workspace, tenant_b: workspaces.Workspace
) -> None:
    claimed = wamid()
    await outbound(conn, tenant_a, claimed)  # however it got there, A holds the wamid
    result = await ingest(conn, [inbound(tenant_b.phone_number_id, claimed, "quiero comprar")])
    assert (result["stored"], result["duplicates"], result["wamid_conflicts"]) == (1, 0, 1)
    [new] = result["new_inbound"]
    assert new["workspace_id"] == str(tenant_b.id)
    row = await conn.fetchrow(
        "select wamid, error_code, content ->> 'body' as body, processed_by_agent"
        " from public.messages where id = $1",
        uuid.UUID(new["message_id"]),
    )
    assert row is not None
    assert tuple(row) == (None, "wamid_conflict", "quiero comprar", False)

    # A redelivery inside the workspace that holds it is still a duplicate.
    again = await ingest(conn, [inbound(tenant_a.phone_number_id, claimed)])
    assert (again["stored"], again["duplicates"], again["wamid_conflicts"]) == (0, 1, 0)


async def test_orphan_statuses_are_capped_per_post(
    conn: asyncpg.Connection, tenant_a: workspaces.Workspace
) -> None:
    flood = [status(tenant_a.phone_number_id, wamid(), "delivered") for _ in range(1200)]
    result = await ingest(conn, statuses=flood)
    assert (result["statuses_orphaned"], result["statuses_dropped"]) == (1000, 200)
    kept = await conn.fetchval(
        "select count(*) from public.message_status_orphans where wamid = any($1::text[])",
        [s["wamid"] for s in flood],
    )
    assert kept == 1000
    note = await conn.fetchval(
        "select error_message from public.whatsapp_webhook_events where id = $1",
        uuid.UUID(result["event_id"]),
    )
    assert note == "200 status(es) for unknown messages not kept: over 1000 per delivery"


async def test_old_orphan_statuses_expire(
    conn: asyncpg.Connection, tenant_a: workspaces.Workspace
) -> None:
    stale = wamid()
    await conn.execute(
        "insert into public.message_status_orphans (wamid, channel_id, status, received_at)"
        " values ($1, $2, 'read', now() - interval '2 days')",
        stale,
        tenant_a.channel_id,
    )
    await ingest(conn, statuses=[status(tenant_a.phone_number_id, wamid(), "sent")])
    assert (
        await conn.fetchval(
            "select count(*) from public.message_status_orphans where wamid = $1", stale
        )
        == 0
    )
    async with acting_as(conn, "service_role"):
        assert await conn.fetchval("select private.expire_status_orphans()") >= 0
