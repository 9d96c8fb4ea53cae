"""The channel a turn sends from is the conversation's own (`channel_id`, in its workspace),
never one found by the `phone_number_id` a conversation names: a conversation of workspace B
that names A's number must not get A's number or credentials."""

from __future__ import annotations

import json
import uuid
from typing import Any

import asyncpg
import pytest

from devstack import workspaces
from tests.supabase.tenancy import random_phone


@pytest.fixture(scope="module")
async def victim(conn: asyncpg.Connection) -> workspaces.Workspace:
    return await workspaces.create_workspace(
        conn,
        "Victim",
        credentials=workspaces.Credentials(access_token="victim-token", api_key="victim-key"),
        agent={"agent_enabled": True},
    )


@pytest.fixture(scope="module")
async def attacker(conn: asyncpg.Connection) -> workspaces.Workspace:
    return await workspaces.create_workspace(
        conn,
        "Attacker",
        credentials=workspaces.Credentials(access_token="attacker-token"),
        agent={"agent_enabled": True},
    )


async def _conversation(
    conn: asyncpg.Connection, owner: workspaces.Workspace, channel_id: uuid.UUID | None, pnid: str
) -> uuid.UUID:
    """A conversation of `owner` naming `pnid`, as a member could once write it."""
    conversation_id: uuid.UUID = await conn.fetchval(
        "insert into public.conversations (workspace_id, channel_id, phone, phone_number_id)"
        " values ($1, $2, $3, $4) returning id",
        owner.id,
        channel_id,
        random_phone(),
        pnid,
    )
    return conversation_id


async def _snapshot(conn: asyncpg.Connection, conversation_id: uuid.UUID) -> dict[str, Any]:
    raw = await conn.fetchval("select private.turn_snapshot($1)", conversation_id)
    snapshot: dict[str, Any] = json.loads(raw)
    return snapshot


async def test_a_conversation_naming_another_tenants_number_sends_from_its_own_channel(
    conn: asyncpg.Connection, victim: workspaces.Workspace, attacker: workspaces.Workspace
) -> None:
    conversation_id = await _conversation(
        conn, attacker, attacker.channel_id, victim.phone_number_id
    )
    snapshot = await _snapshot(conn, conversation_id)
    assert (snapshot["channel_id"], snapshot["phone_number_id"], snapshot["access_token"]) == (
        str(attacker.channel_id),
        attacker.phone_number_id,
        "attacker-token",
    )
    assert snapshot["api_key"] is None


async def test_a_conversation_without_a_channel_gets_none_and_sends_nothing(
    conn: asyncpg.Connection, victim: workspaces.Workspace, attacker: workspaces.Workspace
) -> None:
    conversation_id = await _conversation(conn, attacker, None, victim.phone_number_id)
    snapshot = await _snapshot(conn, conversation_id)
    assert [snapshot[k] for k in ("channel_id", "phone_number_id", "access_token", "api_key")] == [
        None,
        None,
        None,
        None,
    ]
    assert snapshot["enabled"] is False  # the agent counts as off: it cannot answer

    # An inbound message gets the verdict `off`: marked handled, no engine, no send.
    await conn.execute(
        "insert into public.messages (workspace_id, conversation_id, wamid, direction, type,"
        " processed_by_agent) values ($1, $2, $3, 'inbound', 'text', false)",
        attacker.id,
        conversation_id,
        f"wamid.{uuid.uuid4().hex}",
    )
    assert await conn.fetchval("select private.lock_conversation($1)", conversation_id)
    begun = await conn.fetchval("select private.begin_turn($1, 'test', false)", conversation_id)
    await conn.fetchval("select private.unlock_conversation($1)", conversation_id)
    assert json.loads(begun)["verdict"] == "off"
    await conn.execute(
        "update public.messages set processed_by_agent = true where conversation_id = $1",
        conversation_id,
    )

    # The worker gets as far as its outbox: the claim refuses every row, the handoff's too.
    rows = [
        await conn.fetchval(
            "insert into public.messages (workspace_id, conversation_id, direction, type,"
            " content, status, outbox_kind, outbox_position)"
            " values ($1, $2, 'outbound', 'text', '{\"body\": \"hola\"}', 'pending', $3, $4)"
            " returning id",
            attacker.id,
            conversation_id,
            kind,
            position,
        )
        for position, kind in enumerate(("reply", "handoff"))
    ]
    assert await conn.fetchval("select private.lock_conversation($1)", conversation_id)
    epoch = await conn.fetchval("select private.claim_turn_fence($1, 'test')", conversation_id)
    try:
        claim = json.loads(
            await conn.fetchval(
                "select private.claim_outbox_message($1, $2, $3)", conversation_id, epoch, rows[0]
            )
        )
    finally:
        await conn.fetchval("select private.unlock_conversation($1)", conversation_id)
    assert claim == {"claimed": False, "reason": "no channel", "skipped": 2}
    statuses = await conn.fetch(
        "select status, skip_reason from public.messages where id = any($1::uuid[])", rows
    )
    assert {tuple(r) for r in statuses} == {("skipped", "no channel")}
