"""The Realtime stand-in driven by the real Python client, realtime-py 2.34.1 (via supabase-py
where the service would use it)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from realtime import AsyncRealtimeChannel, AsyncRealtimeClient, RealtimeSubscribeStates
from supabase import acreate_client

from tests.devstack.phoenix_client import PhoenixClient
from tests.fixtures.devstack import ANON_KEY, SERVICE_ROLE_KEY

Received = asyncio.Queue[dict[str, Any]]


def topic() -> str:
    return f"room:{uuid.uuid4().hex[:12]}"


def options(*, self_broadcast: bool = False, ack: bool = False, private: bool = False) -> Any:
    return {
        "config": {
            "broadcast": {"self": self_broadcast, "ack": ack},
            "presence": {"key": "", "enabled": False},
            "private": private,
        }
    }


@pytest.fixture
async def clients(devstack_url: str) -> AsyncIterator[Callable[..., AsyncRealtimeClient]]:
    made: list[AsyncRealtimeClient] = []

    def make(key: str = ANON_KEY) -> AsyncRealtimeClient:
        client = AsyncRealtimeClient(f"{devstack_url}/realtime/v1", key, auto_reconnect=False)
        made.append(client)
        return client

    yield make
    for client in made:
        await client.close()


async def subscribed(
    client: AsyncRealtimeClient, name: str, params: Any = None, event: str = "*"
) -> tuple[AsyncRealtimeChannel, Received]:
    received: Received = asyncio.Queue()
    states: list[RealtimeSubscribeStates] = []
    channel = client.channel(name, params or options())
    channel.on_broadcast(event, lambda message: received.put_nowait(dict(message)))
    await channel.subscribe(lambda state, _err: states.append(state))
    assert states == [RealtimeSubscribeStates.SUBSCRIBED]
    return channel, received


async def test_a_subscriber_receives_what_another_client_broadcasts(
    clients: Callable[..., AsyncRealtimeClient],
) -> None:
    name = topic()
    _, received = await subscribed(clients(), name)
    sender, _ = await subscribed(clients(), name)

    await sender.send_broadcast("ping", {"n": 1, "text": "héllo"})

    message = await asyncio.wait_for(received.get(), 3)
    assert message == {"event": "ping", "payload": {"n": 1, "text": "héllo"}}


async def test_http_send_reaches_subscribers_without_a_socket(
    devstack_url: str, clients: Callable[..., AsyncRealtimeClient]
) -> None:
    name = f"conversation:{uuid.uuid4()}"
    _, received = await subscribed(clients(), name, event="typing")
    # The server side as the bridge does it: supabase-py, service role, stateless REST.
    supabase = await acreate_client(devstack_url, SERVICE_ROLE_KEY)
    try:
        await supabase.channel(name).http_send("typing", {"isTyping": True, "source": "agent"})
    finally:
        await supabase.realtime.close()

    message = await asyncio.wait_for(received.get(), 3)
    assert message == {"event": "typing", "payload": {"isTyping": True, "source": "agent"}}


async def test_self_true_echoes_to_the_sender_and_self_false_does_not(
    clients: Callable[..., AsyncRealtimeClient],
) -> None:
    name = topic()
    echoing, echoed = await subscribed(clients(), name, options(self_broadcast=True))
    quiet, not_echoed = await subscribed(clients(), name, options(self_broadcast=False))

    await echoing.send_broadcast("from-echoing", {"n": 1})
    await quiet.send_broadcast("from-quiet", {"n": 2})

    got_by_echoing = [await asyncio.wait_for(echoed.get(), 3) for _ in range(2)]
    assert sorted(m["event"] for m in got_by_echoing) == ["from-echoing", "from-quiet"]
    got_by_quiet = await asyncio.wait_for(not_echoed.get(), 3)
    assert got_by_quiet["event"] == "from-echoing"
    await asyncio.sleep(0.2)
    assert not_echoed.empty(), "a self:false sender got its own broadcast back"


async def drain(received: Received, wait: float = 0.3) -> list[str]:
    await asyncio.sleep(wait)
    events = []
    while not received.empty():
        events.append(received.get_nowait()["event"])
    return events


async def test_private_and_public_channels_of_one_name_are_separate_audiences(
    clients: Callable[..., AsyncRealtimeClient],
) -> None:
    name = topic()
    public_sender, _ = await subscribed(clients(), name, options(private=False))
    _, public_received = await subscribed(clients(), name, options(private=False))
    # service_role passes the private channel policies (it bypasses RLS)
    private_sender, _ = await subscribed(clients(SERVICE_ROLE_KEY), name, options(private=True))
    _, private_received = await subscribed(clients(SERVICE_ROLE_KEY), name, options(private=True))

    await private_sender.send_broadcast("secret-ws", {"private": True})
    await public_sender.send_broadcast("open-ws", {"private": False})
    await private_sender.http_send("secret-rest", {"private": True})
    await public_sender.http_send("open-rest", {"private": False})

    assert sorted(await drain(public_received, 0.5)) == ["open-rest", "open-ws"]
    assert sorted(await drain(private_received, 0.0)) == ["secret-rest", "secret-ws"]


async def test_heartbeat_is_answered_with_the_same_ref(devstack_url: str) -> None:
    client = await PhoenixClient.connect(devstack_url)
    try:
        await client.push("phoenix", "heartbeat", {}, ref="hb-7")
        reply = await client.recv()
        assert (reply.topic, reply.event, reply.ref) == ("phoenix", "phx_reply", "hb-7")
        assert reply.payload == {"status": "ok", "response": {}}
        # realtime-py heartbeats with ref null: the reply echoes null
        await client.push("phoenix", "heartbeat", {}, ref=None)
        reply = await client.recv()
        assert reply.ref is None
        assert reply.payload["status"] == "ok"
        assert reply.keys == ("topic", "event", "payload", "ref")
    finally:
        await client.close()


async def test_realtime_py_null_ref_heartbeats_leave_the_socket_usable(
    devstack_url: str,
) -> None:
    client = AsyncRealtimeClient(
        f"{devstack_url}/realtime/v1", ANON_KEY, auto_reconnect=False, hb_interval=15
    )
    try:
        name = topic()
        _, received = await subscribed(client, name)
        # the first heartbeat goes out right after connect; its reply must not upset the client
        await asyncio.sleep(0.3)
        assert client.is_connected
        other = AsyncRealtimeClient(f"{devstack_url}/realtime/v1", ANON_KEY, auto_reconnect=False)
        try:
            sender, _ = await subscribed(other, name)
            await sender.send_broadcast("still-there", {"ok": True})
            assert (await asyncio.wait_for(received.get(), 3))["event"] == "still-there"
        finally:
            await other.close()
    finally:
        await client.close()


async def test_ack_gets_an_ok_reply_to_the_broadcast_ref(devstack_url: str) -> None:
    sender = await PhoenixClient.connect(devstack_url)
    try:
        name = topic()
        join_ref, reply = await sender.join(name, ack=True)
        assert reply.payload == {"status": "ok", "response": {"postgres_changes": []}}
        ref = await sender.broadcast(name, join_ref, "acked", {"n": 1})
        ack = await sender.recv()
        assert (ack.event, ack.ref, ack.payload) == (
            "phx_reply",
            ref,
            {"status": "ok", "response": {}},
        )
        # and without ack: no reply at all
        quiet = await PhoenixClient.connect(devstack_url)
        try:
            quiet_join, _ = await quiet.join(name, ack="false")
            await quiet.broadcast(name, quiet_join, "unacked", {"n": 2})
            await quiet.nothing()
        finally:
            await quiet.close()
    finally:
        await sender.close()
