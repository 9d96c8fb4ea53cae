"""A member's reply through the bridge, as PostgREST runs the RPCs (role and JWT claims):
public.send_message and public.send_template queue an outbox row with its author and pause the
bot by the workspace's takeover policy; only members of the conversation's workspace may call
them, anon never; bad input is a clear error that writes nothing."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg
import pytest

from tests.fixtures.postgres import acting_as
from tests.supabase.tenancy import Tenant, claims_for, create_tenant


@pytest.fixture
async def tenant(conn: asyncpg.Connection) -> Tenant:
    return await create_tenant(conn)


async def _as_member(
    conn: asyncpg.Connection, user: UUID, query: str, *args: Any
) -> tuple[Any, asyncpg.Record | None, asyncpg.Record]:
    """Run `query` as the user through `authenticated`; return its value, the message row it
    names (if any) and the conversation, read inside the same (rolled back) transaction."""
    async with acting_as(conn, "authenticated", claims_for(user)):
        value = await conn.fetchval(query, *args)
        await conn.execute("reset role")
        message = (
            await conn.fetchrow("select * from public.messages where id = $1", value)
            if isinstance(value, UUID)
            else None
        )
        conversation = await conn.fetchrow(
            "select c.* from public.conversations c where c.id = $1", args[0]
        )
    assert conversation is not None
    return value, message, conversation


async def test_a_member_queues_a_reply_with_its_author_and_the_bot_pauses(
    conn: asyncpg.Connection, tenant: Tenant
) -> None:
    before = datetime.now(UTC)
    _, row, conv = await _as_member(
        conn,
        tenant.agent,
        "select public.send_message($1, $2)",
        tenant.conversation_id,
        "Hola, soy Laura",
    )
    assert row is not None
    assert (row["direction"], row["status"], row["outbox_kind"], row["type"]) == (
        "outbound",
        "pending",
        "human",
        "text",
    )
    assert row["sent_by_agent"] is False
    assert row["sent_by"] == tenant.agent
    assert json.loads(row["content"]) == {"body": "Hola, soy Laura"}
    # No config row change: the default policy pauses for 30 minutes.
    paused = conv["bot_paused_until"]
    assert before + timedelta(minutes=29) < paused < datetime.now(UTC) + timedelta(minutes=31)
    assert conv["agent_conversational"] is None  # the member's own switch is untouched


@pytest.mark.parametrize(
    ("policy", "minutes", "expected"),
    [("off", 30, None), ("pause", 5, timedelta(minutes=5)), ("until_resumed", 30, "infinity")],
)
async def test_the_workspace_policy_decides_the_pause(
    conn: asyncpg.Connection, tenant: Tenant, policy: str, minutes: int, expected: Any
) -> None:
    await conn.execute(
        "update public.workspace_agent_config set human_takeover = $2,"
        " human_takeover_minutes = $3 where workspace_id = $1",
        tenant.workspace_id,
        policy,
        minutes,
    )
    _, _, conv = await _as_member(
        conn, tenant.owner, "select public.send_message($1, 'hola')", tenant.conversation_id
    )
    paused = conv["bot_paused_until"]
    if expected is None:
        assert paused is None
    elif expected == "infinity":
        assert paused == datetime.max  # asyncpg's reading of 'infinity'
    else:
        assert abs(paused - datetime.now(UTC) - expected) < timedelta(seconds=30)


async def test_a_paused_conversation_counts_as_agent_off_until_resumed(
    conn: asyncpg.Connection, tenant: Tenant
) -> None:
    conv = tenant.conversation_id
    enabled = "select private.is_agent_enabled($1)"
    assert await conn.fetchval(enabled, conv) is True
    async with acting_as(conn, "authenticated", claims_for(tenant.agent)):
        await conn.fetchval("select public.send_message($1, 'yo sigo')", conv)
        await conn.execute("reset role")
        assert await conn.fetchval(enabled, conv) is False
        await conn.execute("set local role authenticated")
        await conn.execute("select public.resume_bot($1)", conv)
        await conn.execute("reset role")
        assert await conn.fetchval(enabled, conv) is True


@pytest.mark.parametrize("actor", ["outsider", "other_agent", "other_owner"])
async def test_nobody_outside_the_workspace_may_send(
    conn: asyncpg.Connection, tenant: Tenant, actor: str
) -> None:
    other = await create_tenant(conn)
    user = {"outsider": tenant.outsider, "other_agent": other.agent, "other_owner": other.owner}
    for call, args in [
        ("select public.send_message($1, 'hola')", ()),
        ("select public.send_template($1, 'hello_world', 'en_US')", ()),
        ("select public.resume_bot($1)", ()),
    ]:
        async with acting_as(conn, "authenticated", claims_for(user[actor])):
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match="not a member"):
                await conn.fetchval(call, tenant.conversation_id, *args)
    # An unknown conversation answers the same, telling nothing about other tenants.
    async with acting_as(conn, "authenticated", claims_for(tenant.agent)):
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="not a member"):
            await conn.fetchval(
                "select public.send_message($1, 'hola')", UUID(int=tenant.conversation_id.int ^ 1)
            )
    assert await _outbox(conn, tenant) == []


async def test_anon_may_not_call_the_send_rpcs(conn: asyncpg.Connection, tenant: Tenant) -> None:
    for call in (
        "select public.send_message($1, 'hola')",
        "select public.send_template($1, 'hello_world', 'en_US')",
        "select public.resume_bot($1)",
        "select private.send_message($1, 'hola')",
    ):
        async with acting_as(conn, "anon"):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.fetchval(call, tenant.conversation_id)


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("", "1 to 4096"),
        ("   \n", "not only spaces"),
        ("x" * 4097, "1 to 4096"),
        (None, "1 to 4096"),
    ],
)
async def test_bad_text_is_refused_and_writes_nothing(
    conn: asyncpg.Connection, tenant: Tenant, text: str | None, error: str
) -> None:
    async with acting_as(conn, "authenticated", claims_for(tenant.agent)):
        with pytest.raises(asyncpg.InvalidParameterValueError, match=error):
            await conn.fetchval("select public.send_message($1, $2)", tenant.conversation_id, text)
    assert await _outbox(conn, tenant) == []


async def test_a_text_of_4096_characters_is_accepted(
    conn: asyncpg.Connection, tenant: Tenant
) -> None:
    _, row, _ = await _as_member(
        conn, tenant.agent, "select public.send_message($1, $2)", tenant.conversation_id, "ñ" * 4096
    )
    assert row is not None
    assert json.loads(row["content"])["body"] == "ñ" * 4096


async def test_a_template_is_queued_as_the_cloud_api_object(
    conn: asyncpg.Connection, tenant: Tenant
) -> None:
    _, row, conv = await _as_member(
        conn,
        tenant.agent,
        "select public.send_template($1, $2, $3, $4::jsonb)",
        tenant.conversation_id,
        "order_update",
        "es",
        json.dumps(["Ana", "#123"]),
    )
    assert row is not None
    assert (row["outbox_kind"], row["type"], row["template_name"], row["sent_by"]) == (
        "template",
        "template",
        "order_update",
        tenant.agent,
    )
    content = json.loads(row["content"])
    assert content["template"] == {
        "name": "order_update",
        "language": {"code": "es"},
        "components": [
            {
                "type": "body",
                "parameters": [{"type": "text", "text": "Ana"}, {"type": "text", "text": "#123"}],
            }
        ],
    }
    assert content["body"] == "[order_update] Ana · #123"
    assert conv["bot_paused_until"] is not None
    # Components given as the Cloud API's objects pass through unchanged.
    components = [{"type": "header", "parameters": [{"type": "text", "text": "Hola"}]}]
    _, row, _ = await _as_member(
        conn,
        tenant.agent,
        "select public.send_template($1, 'hello_world', 'en_US', $2::jsonb)",
        tenant.conversation_id,
        json.dumps(components),
    )
    assert row is not None
    assert json.loads(row["content"])["template"]["components"] == components


@pytest.mark.parametrize(
    ("name", "language", "parameters", "error"),
    [
        ("Hello World", "en_US", "[]", "p_template_name"),
        (None, "en_US", "[]", "p_template_name"),
        ("hello_world", "english", "[]", "p_language"),
        ("hello_world", "en_US", '{"a": 1}', "p_parameters must be a JSON array"),
        ("hello_world", "en_US", '["a", {"type": "body"}]', "all strings"),
        ("hello_world", "en_US", '[{"parameters": []}]', "all strings"),
    ],
)
async def test_a_bad_template_is_refused_and_writes_nothing(
    conn: asyncpg.Connection,
    tenant: Tenant,
    name: str | None,
    language: str,
    parameters: str,
    error: str,
) -> None:
    async with acting_as(conn, "authenticated", claims_for(tenant.agent)):
        with pytest.raises(asyncpg.InvalidParameterValueError, match=error):
            await conn.fetchval(
                "select public.send_template($1, $2, $3, $4::jsonb)",
                tenant.conversation_id,
                name,
                language,
                parameters,
            )
    assert await _outbox(conn, tenant) == []


async def test_members_still_write_no_message_row_directly(
    conn: asyncpg.Connection, tenant: Tenant
) -> None:
    async with acting_as(conn, "authenticated", claims_for(tenant.agent)):
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute(
                "update public.conversations set bot_paused_until = null where id = $1",
                tenant.conversation_id,
            )


async def _outbox(conn: asyncpg.Connection, tenant: Tenant) -> list[asyncpg.Record]:
    return await conn.fetch(
        "select id from public.messages where conversation_id = $1 and direction = 'outbound'",
        tenant.conversation_id,
    )
