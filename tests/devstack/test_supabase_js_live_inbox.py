"""What an inbox sees live, end to end through supabase-js signed in with a password: a member of
the workspace reads the conversation, gets the customer's new message (Postgres Changes) and the
bot's typing on the workspace's private channel, sent by the worker's own broadcaster; a member
of another workspace, signed in the same way, reads nothing, cannot join the typing channel and
receives no change."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import aiohttp
import asyncpg
import pytest

from jobs.typing_broadcast import TypingBroadcaster
from tests.devstack.inbox_data import (
    ANA,
    DAVE,
    DEMO_PASSWORD,
    DEMO_STORE,
    customer_writes,
    make_conversation,
)
from tests.fixtures.devstack import ANON_KEY, SERVICE_ROLE_KEY
from tests.js.node import Node, assert_silent, finish, needs_node, read_json

pytestmark = needs_node


@pytest.fixture
async def private_typing(db: asyncpg.Pool) -> AsyncIterator[None]:
    """Demo Store's typing on its private channel for the test, as it was afterwards."""
    before = await db.fetchval(
        "select typing_channel_private from public.workspace_agent_config where workspace_id = $1",
        DEMO_STORE,
    )
    await db.execute(
        "update public.workspace_agent_config set typing_channel_private = true"
        " where workspace_id = $1",
        DEMO_STORE,
    )
    yield
    await db.execute(
        "update public.workspace_agent_config set typing_channel_private = $2"
        " where workspace_id = $1",
        DEMO_STORE,
        before,
    )


async def _steps(proc: Any) -> dict[str, dict[str, Any]]:
    steps: dict[str, dict[str, Any]] = {}
    for expected in ("sign_in", "messages", "joined"):
        line = await read_json(proc, within=20)
        assert line["step"] == expected, line
        steps[expected] = line
    return steps


@pytest.mark.usefixtures("private_typing")
async def test_a_member_follows_a_conversation_live_and_another_workspaces_member_gets_nothing(
    devstack_url: str, db: asyncpg.Pool, node: Node
) -> None:
    conversation = await make_conversation(db, DEMO_STORE, messages=2)
    args = (str(conversation.id),)
    ana = await node("member_live.mjs", devstack_url, ANON_KEY, ANA, DEMO_PASSWORD, *args)
    dave = await node("member_live.mjs", devstack_url, ANON_KEY, DAVE, DEMO_PASSWORD, *args)
    ana_steps, dave_steps = await _steps(ana), await _steps(dave)

    assert ana_steps["sign_in"] == {"step": "sign_in", "data": ANA, "error": None}
    assert ana_steps["messages"]["data"] == list(conversation.wamids)
    assert ana_steps["joined"] == {
        "step": "joined",
        "changes": "SUBSCRIBED",
        "typing": "SUBSCRIBED",
    }
    assert dave_steps["sign_in"] == {"step": "sign_in", "data": DAVE, "error": None}
    assert dave_steps["messages"] == {"step": "messages", "data": [], "error": None}
    # Dave may listen for changes (Realtime checks each row), not join the private channel.
    assert dave_steps["joined"] == {
        "step": "joined",
        "changes": "SUBSCRIBED",
        "typing": "CHANNEL_ERROR",
    }

    message_id = await customer_writes(db, conversation.id, "hola, ¿tienen envíos?")
    assert await read_json(ana) == {"event": "insert", "id": str(message_id)}
    async with aiohttp.ClientSession() as http:
        typing = TypingBroadcaster(http, devstack_url, SERVICE_ROLE_KEY, timedelta(seconds=30))
        assert await typing.send(conversation.id, True, private=True)
        shown = await read_json(ana)
        assert shown["event"] == "typing"
        assert shown["payload"]["isTyping"] is True
        assert shown["payload"]["conversationId"] == str(conversation.id)
        assert await typing.send(conversation.id, False, private=True)
        hidden = await read_json(ana)
        assert (hidden["event"], hidden["payload"]["isTyping"]) == ("typing", False)

    await assert_silent(ana, within=0.5)
    await assert_silent(dave, within=2.0)
    for proc in (ana, dave):
        await finish(proc)
