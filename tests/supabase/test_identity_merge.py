"""Merging two conversations of one customer (`private.resolve_conversation`): every row moved,
the merge recorded and readable by the workspace's members only, and a worker still holding
the merged conversation's turn fenced off."""

from __future__ import annotations

import json
from uuid import UUID

import asyncpg
import pytest

from tests.fixtures.postgres import acting_as
from tests.supabase.tenancy import Tenant, claims_for, create_tenant, random_phone, random_suffix


async def add_conversation(
    conn: asyncpg.Connection, t: Tenant, phone: str | None, bsuid: str | None
) -> UUID:
    conversation_id: UUID = await conn.fetchval(
        "insert into public.conversations (workspace_id, channel_id, phone_number_id, phone,"
        " bsuid, unread_count, last_message_at, last_message_preview)"
        " select $1, ch.id, ch.phone_number_id, $3, $4, 1, now(), $5"
        " from public.whatsapp_channels ch where ch.id = $2 returning id",
        t.workspace_id,
        t.channel_id,
        phone,
        bsuid,
        f"from {phone or bsuid}",
    )
    return conversation_id


async def resolve(conn: asyncpg.Connection, t: Tenant, phone: str, bsuid: str) -> asyncpg.Record:
    row = await conn.fetchrow(
        "select * from private.resolve_conversation($1, $2, null, $3, $4, null)",
        t.workspace_id,
        t.channel_id,
        phone,
        bsuid,
    )
    assert row is not None
    return row


async def test_the_older_conversation_absorbs_the_younger_with_all_its_rows(
    conn: asyncpg.Connection,
) -> None:
    t = await create_tenant(conn)
    phone, bsuid = random_phone(), "CO." + random_suffix()
    older = await add_conversation(conn, t, phone, None)
    younger = await add_conversation(conn, t, None, bsuid)
    message = await conn.fetchval(
        "insert into public.messages (workspace_id, conversation_id, direction, type, content,"
        " timestamp, processed_by_agent)"
        " values ($1, $2, 'inbound', 'text', '{\"body\": \"hola\"}', now(), false)"
        " returning id",
        t.workspace_id,
        younger,
    )
    task = await conn.fetchval(
        "insert into public.tasks (workspace_id, conversation_id, title) values ($1, $2, 'x')"
        " returning id",
        t.workspace_id,
        younger,
    )
    session = await conn.fetchval(
        "insert into public.agent_sessions (workspace_id, agent_id, conversation_id)"
        " values ($1, 'diagnostic-v1', $2) returning id",
        t.workspace_id,
        younger,
    )
    turn = await conn.fetchval(
        "insert into public.agent_turns (workspace_id, session_id, turn_number, role, content)"
        " values ($1, $2, 1, 'user', 'hola') returning id",
        t.workspace_id,
        session,
    )

    row = await resolve(conn, t, phone, bsuid)
    assert row["conversation_id"] == older
    assert row["merged"] == [younger]
    assert [e["message_id"] for e in json.loads(row["requeue"])] == [str(message)]
    assert {e["conversation_id"] for e in json.loads(row["requeue"])} == {str(older)}

    assert not await conn.fetchval(
        "select exists (select 1 from public.conversations where id = $1)", younger
    )
    survivor = await conn.fetchrow("select * from public.conversations where id = $1", older)
    assert survivor is not None
    assert (survivor["phone"], survivor["bsuid"]) == (phone, bsuid)
    assert survivor["unread_count"] == 2
    assert (
        await conn.fetchval("select conversation_id from public.messages where id = $1", message)
        == older
    )
    assert (
        await conn.fetchval("select conversation_id from public.tasks where id = $1", task) == older
    )
    assert (
        await conn.fetchval(
            "select conversation_id from public.agent_sessions where id = $1", session
        )
        == older
    )
    assert (
        await conn.fetchval("select session_id from public.agent_turns where id = $1", turn)
        == session
    )

    merge = await conn.fetchrow(
        "select * from public.conversation_merges where merged_id = $1", younger
    )
    assert merge is not None
    assert merge["survivor_id"] == older
    assert merge["kind"] == "conversation"
    assert json.loads(merge["moved"]) == {
        "messages": 1,
        "tasks": 1,
        "agent_sessions": 1,
        "sessions_closed": 0,
    }
    # Once merged, the same identifiers resolve to the survivor, with nothing more to merge.
    again = await resolve(conn, t, phone, bsuid)
    assert (again["conversation_id"], again["merged"]) == (older, [])


async def test_a_worker_holding_the_merged_conversation_loses_its_fence(
    conn: asyncpg.Connection,
) -> None:
    t = await create_tenant(conn)
    phone, bsuid = random_phone(), "CO." + random_suffix()
    await add_conversation(conn, t, phone, None)
    younger = await add_conversation(conn, t, None, bsuid)
    epoch = await conn.fetchval("select private.claim_turn_fence($1, 'worker-a')", younger)
    await conn.fetchval("select private.assert_turn_fence($1, $2)", younger, epoch)

    await resolve(conn, t, phone, bsuid)

    with pytest.raises(asyncpg.PostgresError) as lost:
        await conn.fetchval("select private.assert_turn_fence($1, $2)", younger, epoch)
    assert lost.value.sqlstate == "WBF01"


async def test_merges_are_readable_by_the_workspace_members_only(
    conn: asyncpg.Connection,
) -> None:
    home, other = await create_tenant(conn), await create_tenant(conn)
    phone, bsuid = random_phone(), "CO." + random_suffix()
    await add_conversation(conn, home, phone, None)
    await add_conversation(conn, home, None, bsuid)
    await resolve(conn, home, phone, bsuid)

    async def visible(role: str, claims: dict[str, str] | None) -> int:
        async with acting_as(conn, role, claims) as c:
            count: int = await c.fetchval(
                "select count(*) from public.conversation_merges where workspace_id = $1",
                home.workspace_id,
            )
            return count

    assert await visible("authenticated", claims_for(home.agent)) == 1
    assert await visible("authenticated", claims_for(other.owner)) == 0
    assert await visible("authenticated", claims_for(home.outsider)) == 0
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await visible("anon", None)
    async with acting_as(conn, "authenticated", claims_for(home.owner)) as c:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await c.execute(
                "delete from public.conversation_merges where workspace_id = $1",
                home.workspace_id,
            )


async def test_the_merged_active_session_is_closed_when_the_survivor_has_one(
    conn: asyncpg.Connection,
) -> None:
    t = await create_tenant(conn)
    phone, bsuid = random_phone(), "CO." + random_suffix()
    older = await add_conversation(conn, t, phone, None)
    younger = await add_conversation(conn, t, None, bsuid)
    sessions = [
        await conn.fetchval(
            "insert into public.agent_sessions (workspace_id, agent_id, conversation_id)"
            " values ($1, 'diagnostic-v1', $2) returning id",
            t.workspace_id,
            conversation,
        )
        for conversation in (older, younger)
    ]

    await resolve(conn, t, phone, bsuid)

    rows = await conn.fetch(
        "select id, conversation_id, status from public.agent_sessions where id = any($1)",
        sessions,
    )
    assert {r["id"]: (r["conversation_id"], r["status"]) for r in rows} == {
        sessions[0]: (older, "active"),
        sessions[1]: (older, "closed"),
    }
