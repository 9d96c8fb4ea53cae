"""Bad input against the Realtime stand-in: refused upgrades, garbage frames, bad REST calls.
Each answer must be an error reply, a close with a proper code or an HTTP error, and the server
must go on serving everyone else."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import jwt
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from devstack.realtime import frames
from tests.devstack.phoenix_client import PhoenixClient, ws_url
from tests.fixtures.devstack import ANON_KEY, SERVICE_ROLE_KEY

FORGED = jwt.encode({"role": "service_role", "exp": 4102444800}, "not-the-secret" * 4)


def topic() -> str:
    return f"room:{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def bystander(devstack_url: str) -> AsyncIterator[tuple[PhoenixClient, str]]:
    """A healthy client joined before the bad input; it must still be served afterwards."""
    client = await PhoenixClient.connect(devstack_url)
    name = topic()
    await client.join(name)
    yield client, name
    await client.close()


async def assert_still_served(devstack_url: str, bystander: tuple[PhoenixClient, str]) -> None:
    client, name = bystander
    sender = await PhoenixClient.connect(devstack_url, vsn="2.0.0")
    try:
        join_ref, reply = await sender.join(name)
        assert reply.payload["status"] == "ok"
        await sender.broadcast(name, join_ref, "still-served", {"ok": True}, binary=True)
        frame = await client.recv()
        assert frame.payload["event"] == "still-served"
    finally:
        await sender.close()


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"vsn": "1.0.0"}, "API key is missing"),
        ({"apikey": FORGED, "vsn": "1.0.0"}, "Failed to validate JWT signature"),
        ({"apikey": "garbage", "vsn": "2.0.0"}, "The token provided is not a valid JWT"),
    ],
)
async def test_upgrades_without_a_valid_apikey_are_refused_with_401(
    devstack_url: str, params: dict[str, str], message: str
) -> None:
    with pytest.raises(InvalidStatus) as refused:
        async with connect(ws_url(devstack_url, **params)):
            pass
    response = refused.value.response
    assert response.status_code == 401
    assert json.loads(response.body or b"") == {"error": message}


async def test_an_unknown_vsn_is_refused(devstack_url: str) -> None:
    with pytest.raises(InvalidStatus) as refused:
        async with connect(ws_url(devstack_url, apikey=ANON_KEY, vsn="3.0.0")):
            pass
    assert refused.value.response.status_code == 400


async def test_stray_connect_params_are_ignored(devstack_url: str) -> None:
    url = ws_url(devstack_url, apikey=ANON_KEY, vsn="1.0.0", log_level="info", foo="bar")
    async with connect(url) as ws:
        await ws.send(
            json.dumps({"topic": "phoenix", "event": "heartbeat", "payload": {}, "ref": "1"})
        )
        assert json.loads(await asyncio.wait_for(ws.recv(), 3))["ref"] == "1"


GARBAGE: list[tuple[str, str, Any, int]] = [
    ("not json", "1.0.0", "{nope", frames.CLOSE_INVALID_PAYLOAD),
    ("v1 array", "1.0.0", json.dumps([None, "1", "phoenix", "heartbeat", {}]), 1007),
    ("v1 missing ref", "1.0.0", json.dumps({"topic": "t", "event": "e", "payload": {}}), 1007),
    (
        "v1 topic not a string",
        "1.0.0",
        json.dumps({"topic": 5, "event": "e", "payload": {}, "ref": None}),
        1007,
    ),
    (
        "v1 ref a number",
        "1.0.0",
        json.dumps({"topic": "t", "event": "e", "payload": {}, "ref": 1}),
        1007,
    ),
    ("v1 binary frame", "1.0.0", b"\x03\x00", frames.CLOSE_UNSUPPORTED_DATA),
    ("v2 object", "2.0.0", json.dumps({"topic": "t"}), 1007),
    ("v2 short array", "2.0.0", json.dumps([None, "1", "t"]), 1007),
    ("v2 unknown binary kind", "2.0.0", b"\x09abc", frames.CLOSE_UNSUPPORTED_DATA),
    ("v2 reply kind from a client", "2.0.0", b"\x01\x00\x00\x00\x00", 1003),
    ("v2 empty binary", "2.0.0", b"", 1007),
    ("v2 truncated kind 3", "2.0.0", b"\x03\x01\x02\x30\x04\x00\x01" + b"9", 1007),
    ("v2 kind 3 bad utf-8", "2.0.0", b"\x03\x00\x00\x02\x01\x00\x01\xff\xfeE{}", 1007),
    ("oversized frame", "1.0.0", "x" * (5 * 1024 * 1024), frames.CLOSE_MESSAGE_TOO_BIG),
]


@pytest.mark.parametrize(
    ("vsn", "data", "code"), [g[1:] for g in GARBAGE], ids=[g[0] for g in GARBAGE]
)
async def test_garbage_frames_close_the_socket_with_a_proper_code(
    devstack_url: str,
    bystander: tuple[PhoenixClient, str],
    vsn: str,
    data: str | bytes,
    code: int,
) -> None:
    async with connect(ws_url(devstack_url, apikey=ANON_KEY, vsn=vsn), max_size=None) as ws:
        await ws.send(data)
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 5)
        assert ws.close_code == code
    await assert_still_served(devstack_url, bystander)


async def test_bad_messages_on_a_joined_channel_get_error_replies(
    devstack_url: str, bystander: tuple[PhoenixClient, str]
) -> None:
    client = await PhoenixClient.connect(devstack_url, vsn="2.0.0")
    try:
        name = topic()
        join_ref, _ = await client.join(name)
        cases: list[tuple[str, Any]] = [
            ("unknown-event", {"x": 1}),
            ("broadcast", ["not", "an", "object"]),
            ("presence", "not an object"),
        ]
        for event, payload in cases:
            ref = client.next_ref()
            await client.push(f"realtime:{name}", event, payload, ref=ref, join_ref=join_ref)
            reply = await client.recv()
            assert (reply.event, reply.ref, reply.payload["status"]) == ("phx_reply", ref, "error")
            assert reply.payload["response"]["reason"]
        # a kind 3 push whose JSON body is broken would crash realtime-js receivers
        ref = client.next_ref()
        await client.ws.send(
            frames.encode_user_broadcast_push(
                f"realtime:{name}", "e", b"{broken", join_ref=join_ref, ref=ref
            )
        )
        reply = await client.recv()
        assert (reply.ref, reply.payload["status"]) == (ref, "error")
        # a join whose payload is not an object
        await client.push(f"realtime:{topic()}", "phx_join", "nope", ref="j", join_ref="j")
        reply = await client.recv()
        assert (reply.ref, reply.payload["status"]) == ("j", "error")
        # and the socket is still fine
        await client.push("phoenix", "heartbeat", {}, ref="hb")
        assert (await client.recv()).ref == "hb"
    finally:
        await client.close()
    await assert_still_served(devstack_url, bystander)


# --- REST ---------------------------------------------------------------------------------


async def test_rest_broadcast_needs_a_valid_token(devstack_url: str) -> None:
    body = {"messages": [{"topic": topic(), "event": "e", "payload": {}}]}
    async with httpx.AsyncClient(base_url=devstack_url) as http:
        for headers in ({}, {"Authorization": f"Bearer {FORGED}"}, {"apikey": "garbage"}):
            response = await http.post("/realtime/v1/api/broadcast", json=body, headers=headers)
            assert response.status_code == 401, headers
            # A key that is not the project's is refused by the gateway before Realtime.
            message = "Invalid API key" if "apikey" in headers else "Unauthorized"
            assert response.json()["message"] == message
            response = await http.post(
                "/realtime/v1/api/broadcast/room/events/e", json={}, headers=headers
            )
            assert response.status_code == 401
        # Bearer wins over a good apikey header
        response = await http.post(
            "/realtime/v1/api/broadcast",
            json=body,
            headers={"apikey": ANON_KEY, "Authorization": f"Bearer {FORGED}"},
        )
        assert response.status_code == 401
        # the apikey header alone is enough
        response = await http.post(
            "/realtime/v1/api/broadcast", json=body, headers={"apikey": ANON_KEY}
        )
        assert response.status_code == 202


@pytest.mark.parametrize(
    ("body", "errors"),
    [
        ({}, {"messages": ["can't be blank"]}),
        ({"messages": []}, {"messages": ["can't be blank"]}),
        ({"messages": "nope"}, {"messages": ["is invalid"]}),
        (
            {
                "messages": [
                    {"event": "e", "payload": {}},
                    {"topic": "t", "event": "e", "payload": {}},
                ]
            },
            {"messages": [{"topic": ["can't be blank"]}, {}]},
        ),
        (
            {"messages": [{"topic": "t", "payload": {}}]},
            {"messages": [{"event": ["can't be blank"]}]},
        ),
        (
            {"messages": [{"topic": "t", "event": "e"}]},
            {"messages": [{"payload": ["can't be blank"]}]},
        ),
        (
            {"messages": [{"topic": "t", "event": "e", "payload": [1, 2]}]},
            {"messages": [{"payload": ["is invalid"]}]},
        ),
        (
            {"messages": [{"topic": "t", "event": "e", "payload": {}, "private": "maybe"}]},
            {"messages": [{"private": ["is invalid"]}]},
        ),
        (
            {"messages": [{"topic": "t", "event": "e", "payload": {}, "id": "not-a-uuid"}]},
            {"messages": [{"id": ["is invalid"]}]},
        ),
    ],
)
async def test_bad_batches_get_422_with_the_errors(
    devstack_url: str, body: dict[str, Any], errors: dict[str, Any]
) -> None:
    async with httpx.AsyncClient(base_url=devstack_url) as http:
        response = await http.post(
            "/realtime/v1/api/broadcast", json=body, headers={"apikey": SERVICE_ROLE_KEY}
        )
    assert response.status_code == 422
    assert response.json() == {"errors": errors}


async def test_single_broadcast_content_types(devstack_url: str) -> None:
    v2 = await PhoenixClient.connect(devstack_url, vsn="2.0.0")
    v1 = await PhoenixClient.connect(devstack_url)
    name = topic()
    await v2.join(name)
    await v1.join(name)
    url = f"/realtime/v1/api/broadcast/{name.replace(':', '%3A')}/events/ev"
    headers = {"apikey": ANON_KEY}
    try:
        async with httpx.AsyncClient(base_url=devstack_url, headers=headers) as http:
            response = await http.post(
                url, content=b"hello", headers={"Content-Type": "text/plain"}
            )
            assert response.status_code == 415
            assert response.json()["error"].startswith("Unsupported Media Type")
            # a missing Content-Type is accepted (JSON); stray query params are ignored
            request = http.build_request(
                "POST", url, content=b'{"no":"type"}', params={"apikey": "x", "vsn": "2.0.0"}
            )
            assert "content-type" not in request.headers
            assert (await http.send(request)).status_code == 202
            # a JSON body that is not an object arrives under "_json"
            assert (await http.post(url, json=[1, 2])).status_code == 202
            # raw bytes reach v2 sockets only
            response = await http.post(
                url, content=b"\x00\x01raw", headers={"Content-Type": "application/octet-stream"}
            )
            assert response.status_code == 202
            response = await http.post(url, json={"blob": "x" * 300_000})
            assert response.status_code == 422
        assert (await v2.recv()).payload["payload"] == {"no": "type"}
        assert (await v2.recv()).payload["payload"] == {"_json": [1, 2]}
        raw = await v2.recv()
        assert raw.binary
        assert raw.payload["payload"] == b"\x00\x01raw"
        await v2.nothing()
        assert (await v1.recv()).payload["payload"] == {"no": "type"}
        assert (await v1.recv()).payload["payload"] == {"_json": [1, 2]}
        await v1.nothing()
    finally:
        await v2.close()
        await v1.close()


async def test_single_broadcast_path_segments_are_url_decoded(devstack_url: str) -> None:
    name = f"team/{uuid.uuid4().hex[:8]}:inbox events"
    client = await PhoenixClient.connect(devstack_url)
    try:
        await client.join(name)
        async with httpx.AsyncClient(base_url=devstack_url, headers={"apikey": ANON_KEY}) as http:
            encoded = "team%2F" + name.removeprefix("team/").replace(":", "%3A").replace(" ", "%20")
            response = await http.post(
                f"/realtime/v1/api/broadcast/{encoded}/events/new%3Amessage", json={"n": 1}
            )
            assert response.status_code == 202
            response = await http.post(
                f"/realtime/v1/api/broadcast/{encoded}/events/{'e' * 256}", json={}
            )
            assert response.status_code == 422
            response = await http.post("/realtime/v1/api/broadcast/only-topic", json={})
            assert response.status_code == 404
            response = await http.post(
                f"/realtime/v1/api/broadcast/{encoded}/events/e",
                content=b"{broken",
                headers={"Content-Type": "application/json"},
            )
            assert response.status_code == 400
        frame = await client.recv()
        assert frame.topic == f"realtime:{name}"
        assert frame.payload == {"event": "new:message", "payload": {"n": 1}, "type": "broadcast"}
        await client.nothing()
    finally:
        await client.close()
