"""The Realtime stand-in's Phoenix protocol, frame by frame, with a raw client (v1 and v2)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import httpx
import jwt
import pytest
from realtime import (
    AsyncRealtimeClient,
    RealtimePostgresChangesListenEvent,
    RealtimeSubscribeStates,
)

from devstack.config import LOCAL_JWT_SECRET
from tests.devstack.phoenix_client import PhoenixClient
from tests.fixtures.devstack import ANON_KEY, SERVICE_ROLE_KEY


def topic() -> str:
    return f"room:{uuid.uuid4().hex[:12]}"


def token(**claims: Any) -> str:
    return jwt.encode(claims, LOCAL_JWT_SECRET, algorithm="HS256")


async def test_v1_replies_carry_exactly_topic_event_payload_ref(devstack_url: str) -> None:
    client = await PhoenixClient.connect(devstack_url)
    try:
        name = topic()
        join_ref, reply = await client.join(name)
        assert reply.keys == ("topic", "event", "payload", "ref")
        assert (reply.topic, reply.ref) == (f"realtime:{name}", join_ref)
        assert reply.payload == {"status": "ok", "response": {"postgres_changes": []}}
    finally:
        await client.close()


@pytest.mark.parametrize(
    ("join_topic", "reason"),
    [
        ("realtime:", "TopicNameRequired: You must provide a topic name"),
        ("room-without-prefix", "unmatched topic"),
    ],
)
async def test_joins_on_bad_topics_get_error_replies(
    devstack_url: str, join_topic: str, reason: str
) -> None:
    client = await PhoenixClient.connect(devstack_url)
    try:
        await client.push(join_topic, "phx_join", {"config": {}}, ref="1", join_ref="1")
        reply = await client.reply_to("1")
        assert reply.payload == {"status": "error", "response": {"reason": reason}}
    finally:
        await client.close()


@pytest.mark.parametrize(
    ("access_token", "code"),
    [
        (jwt.encode({"role": "anon", "exp": 4102444800}, "x" * 40), "JwtSignatureError"),
        (token(role="anon", exp=int(time.time()) - 60), "InvalidJWTToken: Token has expired"),
        (token(role="anon"), "InvalidJWTToken: Fields `role` and `exp` are required"),
        ("not-a-jwt", "MalformedJWT"),
    ],
)
async def test_a_bad_access_token_fails_the_join(
    devstack_url: str, access_token: str, code: str
) -> None:
    client = await PhoenixClient.connect(devstack_url)
    try:
        _, reply = await client.join(topic(), access_token=access_token)
        assert reply.payload["status"] == "error"
        assert reply.payload["response"]["reason"].startswith(code)
    finally:
        await client.close()


async def test_sb_tokens_fall_back_to_the_socket_apikey(devstack_url: str) -> None:
    client = await PhoenixClient.connect(devstack_url)
    try:
        _, reply = await client.join(topic(), access_token="sb_publishable_abc")
        assert reply.payload["status"] == "ok"
    finally:
        await client.close()


async def test_postgres_changes_bindings_are_echoed_with_ids_realtime_py_accepts(
    devstack_url: str,
) -> None:
    client = AsyncRealtimeClient(f"{devstack_url}/realtime/v1", ANON_KEY, auto_reconnect=False)
    try:
        channel = client.channel(topic())
        channel.on_postgres_changes(
            RealtimePostgresChangesListenEvent.Insert,
            lambda _p: None,
            table="messages",
            schema="public",
        )
        channel.on_postgres_changes(
            # a published table: Realtime answers a binding it cannot subscribe with a system
            # error, which realtime-py turns into CHANNEL_ERROR
            RealtimePostgresChangesListenEvent.All,
            lambda _p: None,
            table="conversations",
            filter=f"id=eq.{uuid.uuid4()}",
        )
        states: list[RealtimeSubscribeStates] = []
        await channel.subscribe(lambda state, _err: states.append(state))
        assert states == [RealtimeSubscribeStates.SUBSCRIBED]
        ids = [callback.id for callback in channel.postgres_changes_callbacks]
        assert all(isinstance(i, int) for i in ids)
        assert len(set(ids)) == 2
    finally:
        await client.close()


async def test_a_duplicate_join_closes_the_old_join_first(devstack_url: str) -> None:
    client = await PhoenixClient.connect(devstack_url, vsn="2.0.0")
    peer = await PhoenixClient.connect(devstack_url)
    try:
        name = topic()
        first_ref, _ = await client.join(name)
        second_ref = client.next_ref()
        await client.push(
            f"realtime:{name}", "phx_join", {"config": {}}, ref=second_ref, join_ref=second_ref
        )
        close = await client.recv()
        assert (close.event, close.ref, close.join_ref, close.payload) == (
            "phx_close",
            first_ref,
            first_ref,
            {},
        )
        reply = await client.recv()
        assert (reply.event, reply.ref, reply.payload["status"]) == ("phx_reply", second_ref, "ok")
        # one membership, not two
        peer_ref, _ = await peer.join(name)
        await peer.broadcast(name, peer_ref, "once", {"n": 1})
        assert (await client.recv()).payload["event"] == "once"
        await client.nothing()
    finally:
        await client.close()
        await peer.close()


async def test_leave_replies_ok_then_closes_and_stops_delivery(devstack_url: str) -> None:
    client = await PhoenixClient.connect(devstack_url)
    peer = await PhoenixClient.connect(devstack_url)
    try:
        name = topic()
        join_ref, _ = await client.join(name)
        peer_ref, _ = await peer.join(name)
        await client.push(f"realtime:{name}", "phx_leave", {}, ref="leave-1", join_ref=join_ref)
        reply = await client.recv()
        assert (reply.event, reply.ref, reply.payload) == (
            "phx_reply",
            "leave-1",
            {"status": "ok", "response": {}},
        )
        close = await client.recv()
        assert (close.event, close.ref, close.payload) == ("phx_close", join_ref, {})
        await peer.broadcast(name, peer_ref, "after-leave", {"n": 1})
        await client.nothing()
        # leaving a topic that is not joined is still ok, with no phx_close
        await client.push("realtime:never-joined", "phx_leave", {}, ref="leave-2")
        reply = await client.recv()
        assert (reply.ref, reply.payload["status"]) == ("leave-2", "ok")
        await client.nothing()
    finally:
        await client.close()
        await peer.close()


@pytest.mark.parametrize("event", ["broadcast", "access_token", "presence", "whatever"])
async def test_messages_on_a_topic_not_joined_get_unmatched_topic(
    devstack_url: str, event: str
) -> None:
    client = await PhoenixClient.connect(devstack_url)
    try:
        await client.push(f"realtime:{topic()}", event, {}, ref="9")
        reply = await client.recv()
        assert (reply.event, reply.ref) == ("phx_reply", "9")
        assert reply.payload == {"status": "error", "response": {"reason": "unmatched topic"}}
    finally:
        await client.close()


async def test_access_token_refresh_is_silent_and_a_bad_one_shuts_the_channel(
    devstack_url: str,
) -> None:
    client = await PhoenixClient.connect(devstack_url)
    peer = await PhoenixClient.connect(devstack_url)
    try:
        name = topic()
        join_ref, _ = await client.join(name)
        peer_ref, _ = await peer.join(name)
        fresh = token(role="authenticated", exp=int(time.time()) + 3600, sub=str(uuid.uuid4()))
        await client.push(
            f"realtime:{name}", "access_token", {"access_token": fresh}, join_ref=join_ref
        )
        await client.nothing()
        await peer.broadcast(name, peer_ref, "still-joined", {})
        assert (await client.recv()).payload["event"] == "still-joined"

        forged = jwt.encode({"role": "anon", "exp": 4102444800}, "y" * 40)
        await client.push(
            f"realtime:{name}", "access_token", {"access_token": forged}, join_ref=join_ref
        )
        system = await client.recv()
        assert system.event == "system"
        assert system.ref is None
        assert system.payload["status"] == "error"
        assert system.payload["extension"] == "system"
        assert system.payload["channel"] == name
        close = await client.recv()
        assert (close.event, close.ref) == ("phx_close", join_ref)
        await peer.broadcast(name, peer_ref, "after-shutdown", {})
        await client.nothing()
    finally:
        await client.close()
        await peer.close()


async def test_the_channel_shuts_down_when_its_token_expires(devstack_url: str) -> None:
    client = await PhoenixClient.connect(devstack_url)
    try:
        short = token(role="anon", exp=int(time.time()) + 2)
        join_ref, reply = await client.join(topic(), access_token=short)
        assert reply.payload["status"] == "ok"
        system = await client.recv(within=4)
        assert system.event == "system"
        assert system.payload["status"] == "error"
        assert "expired" in system.payload["message"]
        close = await client.recv()
        assert (close.event, close.ref) == ("phx_close", join_ref)
    finally:
        await client.close()


async def test_presence_pushes_are_acknowledged(devstack_url: str) -> None:
    client = await PhoenixClient.connect(devstack_url, vsn="2.0.0")
    try:
        name = topic()
        join_ref, _ = await client.join(
            name, extra_config={"presence": {"key": "u1", "enabled": True}}
        )
        state = await client.recv()
        assert (state.event, state.payload, state.join_ref) == ("presence_state", {}, join_ref)
        await client.push(
            f"realtime:{name}",
            "presence",
            {"type": "presence", "event": "track", "payload": {"online_at": "now"}},
            ref="p1",
            join_ref=join_ref,
        )
        reply = await client.recv()
        assert (reply.ref, reply.payload) == ("p1", {"status": "ok", "response": {}})
    finally:
        await client.close()


async def test_string_booleans_in_the_join_config_count(devstack_url: str) -> None:
    client = await PhoenixClient.connect(devstack_url)
    try:
        name = topic()
        join_ref, _ = await client.join(name, self_broadcast="TRUE", ack="true")
        ref = await client.broadcast(name, join_ref, "echo", {"n": 1})
        frames = [await client.recv(), await client.recv()]
        events = sorted(f.event for f in frames)
        assert events == ["broadcast", "phx_reply"]
        assert next(f for f in frames if f.event == "phx_reply").ref == ref
    finally:
        await client.close()


async def test_v2_sockets_get_arrays_and_binary_user_broadcasts(devstack_url: str) -> None:
    js_like = await PhoenixClient.connect(devstack_url, vsn="2.0.0")
    py_like = await PhoenixClient.connect(devstack_url, vsn="1.0.0")
    try:
        name = topic()
        js_ref, reply = await js_like.join(name)
        assert (reply.join_ref, reply.ref, reply.topic) == (js_ref, js_ref, f"realtime:{name}")
        py_ref, _ = await py_like.join(name)

        # v1 push -> v2 text array with null refs
        await py_like.broadcast(name, py_ref, "from-v1", {"a": 1})
        frame = await js_like.recv()
        assert not frame.binary
        assert (frame.join_ref, frame.ref) == (None, None)
        assert frame.payload == {"type": "broadcast", "event": "from-v1", "payload": {"a": 1}}

        # kind 3 push -> kind 4 for v2, a JSON broadcast object for v1
        await js_like.broadcast(name, js_ref, "from-v2", {"b": [1, 2]}, binary=True)
        frame = await py_like.recv()
        assert frame.keys == ("topic", "event", "payload", "ref")
        assert frame.ref is None
        assert frame.payload == {"event": "from-v2", "payload": {"b": [1, 2]}, "type": "broadcast"}
        await js_like.nothing()  # self is false

        echo = await PhoenixClient.connect(devstack_url, vsn="2.0.0")
        try:
            echo_ref, _ = await echo.join(name, self_broadcast=True, ack=True)
            sent_ref = await echo.broadcast(name, echo_ref, "kind3", {"c": 3}, binary=True)
            got = [await echo.recv(), await echo.recv()]
            binary = next(f for f in got if f.binary)
            assert binary.payload == {"type": "broadcast", "event": "kind3", "payload": {"c": 3}}
            reply = next(f for f in got if not f.binary)
            assert (reply.event, reply.ref, reply.join_ref) == ("phx_reply", sent_ref, echo_ref)
        finally:
            await echo.close()
    finally:
        await js_like.close()
        await py_like.close()


async def test_rest_broadcasts_reach_both_serializers(devstack_url: str) -> None:
    v2 = await PhoenixClient.connect(devstack_url, vsn="2.0.0")
    v1 = await PhoenixClient.connect(devstack_url)
    headers = {"apikey": SERVICE_ROLE_KEY, "Authorization": f"Bearer {SERVICE_ROLE_KEY}"}
    try:
        name = topic()
        await v2.join(name)
        await v1.join(name)
        async with httpx.AsyncClient(base_url=devstack_url, headers=headers) as http:
            single = await http.post(
                f"/realtime/v1/api/broadcast/{name.replace(':', '%3A')}/events/single",
                json={"s": 1},
            )
            assert (single.status_code, single.content) == (202, b"")
            message_id = str(uuid.uuid4())
            batch = await http.post(
                "/realtime/v1/api/broadcast",
                json={
                    "messages": [
                        {"topic": name, "event": "batch", "payload": {"b": 2}, "id": message_id}
                    ]
                },
            )
            assert (batch.status_code, batch.content) == (202, b"")

        frame = await v2.recv()
        assert frame.binary
        assert frame.payload == {
            "type": "broadcast",
            "event": "single",
            "payload": {"s": 1},
        }
        frame = await v2.recv()
        assert not frame.binary
        assert frame.payload == {
            "payload": {"b": 2},
            "event": "batch",
            "type": "broadcast",
            "meta": {"id": message_id},
        }
        assert (await v1.recv()).payload == {
            "event": "single",
            "payload": {"s": 1},
            "type": "broadcast",
        }
        assert (await v1.recv()).payload["meta"] == {"id": message_id}
    finally:
        await v2.close()
        await v1.close()


async def test_oversized_broadcasts_are_refused_with_ack_and_dropped_without(
    devstack_url: str,
) -> None:
    acked = await PhoenixClient.connect(devstack_url)
    plain = await PhoenixClient.connect(devstack_url)
    receiver = await PhoenixClient.connect(devstack_url)
    try:
        name = topic()
        await receiver.join(name)
        acked_ref, _ = await acked.join(name, ack=True)
        plain_ref, _ = await plain.join(name)
        big = {"blob": "x" * 300_000}
        ref = await acked.broadcast(name, acked_ref, "big", big)
        reply = await acked.recv()
        assert (reply.ref, reply.payload) == (
            ref,
            {"status": "error", "response": {"reason": "payload_size_exceeded"}},
        )
        await plain.broadcast(name, plain_ref, "big", big)
        await plain.nothing()
        await receiver.nothing()
    finally:
        for client in (acked, plain, receiver):
            await client.close()


async def test_the_phoenix_path_serves_too(devstack_url: str) -> None:
    from websockets.asyncio.client import connect

    from tests.devstack.phoenix_client import ws_url

    url = ws_url(devstack_url, "/socket/websocket", apikey=ANON_KEY, vsn="2.0.0")
    async with connect(url) as ws:
        await ws.send(json.dumps([None, "1", "phoenix", "heartbeat", {}]))
        reply = json.loads(await asyncio.wait_for(ws.recv(), 3))
        assert reply == [None, "1", "phoenix", "phx_reply", {"status": "ok", "response": {}}]


async def test_a_socket_may_join_at_most_100_channels(devstack_url: str) -> None:
    client = await PhoenixClient.connect(devstack_url, vsn="2.0.0")
    try:
        base = topic()
        for n in range(100):
            _, reply = await client.join(f"{base}:{n}")
            assert reply.payload["status"] == "ok"
        _, reply = await client.join(f"{base}:100")
        assert reply.payload == {
            "status": "error",
            "response": {"reason": "ChannelRateLimitReached: Too many channels"},
        }
        # re-joining a joined topic replaces its channel rather than adding one
        _, reply = await client.join(f"{base}:0")
        assert reply.payload["status"] == "ok"
    finally:
        await client.close()
