"""The frontend's own client, supabase-js (realtime-js, vsn 2.0.0) on node, against the Realtime
stand-in, in both directions with the bridge's Python client."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from realtime import AsyncRealtimeClient
from supabase import acreate_client

from tests.fixtures.devstack import ANON_KEY, SERVICE_ROLE_KEY
from tests.js.node import Node, finish, needs_node, read_line

pytestmark = needs_node


async def send_over_the_socket(devstack_url: str, topic: str, event: str, payload: Any) -> None:
    client = AsyncRealtimeClient(f"{devstack_url}/realtime/v1", SERVICE_ROLE_KEY)
    try:
        channel = client.channel(topic)
        await channel.subscribe()
        await channel.send_broadcast(event, payload)
        await asyncio.sleep(0.1)
    finally:
        await client.close()


async def send_with_http_send(devstack_url: str, topic: str, event: str, payload: Any) -> None:
    supabase = await acreate_client(devstack_url, SERVICE_ROLE_KEY)
    try:
        await supabase.channel(topic).http_send(event, payload)
    finally:
        await supabase.realtime.close()


@pytest.mark.parametrize(
    "send",
    [send_with_http_send, send_over_the_socket],
    ids=["http_send (binary kind 4 to js)", "socket send_broadcast (text array to js)"],
)
async def test_supabase_js_receives_the_agents_typing_indicator(
    devstack_url: str,
    node: Node,
    send: Callable[[str, str, str, Any], Awaitable[None]],
) -> None:
    conversation_id = str(uuid.uuid4())
    proc = await node("typing_subscriber.mjs", devstack_url, ANON_KEY, conversation_id)
    assert await read_line(proc) == "SUBSCRIBED"

    typing = {"isTyping": True, "source": "agent", "conversationId": conversation_id}
    await send(devstack_url, f"conversation:{conversation_id}", "typing", typing)

    assert json.loads(await read_line(proc)) == typing
    await finish(proc)


@pytest.mark.parametrize(
    "mode", ["socket", "rest"], ids=["joined: binary kind 3 push", "not joined: REST fallback"]
)
async def test_realtime_py_receives_what_supabase_js_sends(
    devstack_url: str, node: Node, mode: str
) -> None:
    topic = f"conversation:{uuid.uuid4()}"
    client = AsyncRealtimeClient(f"{devstack_url}/realtime/v1", ANON_KEY, auto_reconnect=False)
    received: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    try:
        channel = client.channel(topic)
        channel.on_broadcast("note", lambda message: received.put_nowait(dict(message)))
        await channel.subscribe()

        payload = {"from": "crm", "text": "a human is taking over", "n": [1, 2]}
        proc = await node(
            "broadcast_sender.mjs", devstack_url, ANON_KEY, topic, "note", json.dumps(payload), mode
        )
        # socket: the server acked the push; rest: the batch endpoint answered 2xx
        assert await read_line(proc) == "ok"
        await finish(proc)

        message = await asyncio.wait_for(received.get(), 5)
        assert message == {"event": "note", "payload": payload}
    finally:
        await client.close()


async def test_supabase_js_heartbeats_are_answered(devstack_url: str, node: Node) -> None:
    proc = await node("heartbeats.mjs", devstack_url, ANON_KEY)
    assert await read_line(proc) == "HEARTBEATS OK"
    await finish(proc)
