"""Status webhooks from the WhatsApp stand-in: a second stand-in process posts `sent`,
`delivered` and `read` for every successful send, signed with the app secret, to a receiver
started by the test."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.fixtures.devstack import free_port, start_devstack, stop_process, wait_http

APP_SECRET = "local-app-secret"
PHONE_NUMBER_ID = "1000000000000001"
# The receiver refuses deliveries about this recipient, to show failures stay local.
REFUSED_RECIPIENT = "4915199999999"


@dataclass
class Receiver:
    url: str
    posts: asyncio.Queue[tuple[dict[str, str], bytes]] = field(default_factory=asyncio.Queue)

    async def next_post(self) -> tuple[dict[str, str], bytes]:
        return await asyncio.wait_for(self.posts.get(), 5)


@pytest.fixture(scope="module")
async def receiver() -> AsyncIterator[Receiver]:
    port = free_port()
    box = Receiver(url=f"http://127.0.0.1:{port}/webhooks/whatsapp")

    async def webhook(request: Request) -> Response:
        raw = await request.body()
        if REFUSED_RECIPIENT.encode() in raw:
            return Response(status_code=500)
        box.posts.put_nowait((dict(request.headers), raw))
        return Response(status_code=200)

    app = Starlette(routes=[Route("/webhooks/whatsapp", webhook, methods=["POST"])])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    task = asyncio.create_task(server.serve())
    await wait_http(box.url)  # a GET is answered 405 once the server listens
    yield box
    server.should_exit = True
    await task


@pytest.fixture(scope="module")
async def signing_devstack(database_url: str, receiver: Receiver) -> AsyncIterator[str]:
    proc, url = await start_devstack(
        database_url,
        "--whatsapp-webhook-url",
        receiver.url,
        "--whatsapp-app-secret",
        APP_SECRET,
    )
    try:
        yield url
    finally:
        await stop_process(proc)


@pytest.fixture
async def whatsapp(signing_devstack: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=f"{signing_devstack}/whatsapp", timeout=10) as client:
        yield client


async def post_text(client: httpx.AsyncClient, to: str) -> httpx.Response:
    return await client.post(
        f"/v21.0/{PHONE_NUMBER_ID}/messages",
        headers={"Authorization": "Bearer local-token"},
        json={
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": to,
            "type": "text",
            "text": {"body": "Grüße"},
        },
    )


async def send(client: httpx.AsyncClient, to: str) -> str:
    response = await post_text(client, to)
    assert response.status_code == 200
    wamid: str = response.json()["messages"][0]["id"]
    return wamid


def status_of(raw: bytes) -> dict[str, Any]:
    body = json.loads(raw)
    [entry] = body["entry"]
    [change] = entry["changes"]
    assert change["field"] == "messages"
    value = change["value"]
    assert value["messaging_product"] == "whatsapp"
    [status] = value["statuses"]
    status["phone_number_id"] = value["metadata"]["phone_number_id"]
    assert body["object"] == "whatsapp_business_account"
    return dict(status)


async def test_a_send_is_followed_by_signed_sent_delivered_read_webhooks(
    whatsapp: httpx.AsyncClient, receiver: Receiver
) -> None:
    wamid = await send(whatsapp, "4915100000042")

    statuses = []
    for _ in range(3):
        headers, raw = await receiver.next_post()
        expected = "sha256=" + hmac.new(APP_SECRET.encode(), raw, hashlib.sha256).hexdigest()
        assert headers["x-hub-signature-256"] == expected
        assert headers["content-type"] == "application/json"
        statuses.append(status_of(raw))

    assert [s["status"] for s in statuses] == ["sent", "delivered", "read"]
    for status in statuses:
        assert status["id"] == wamid
        assert status["recipient_id"] == "4915100000042"
        assert status["phone_number_id"] == PHONE_NUMBER_ID
        assert status["timestamp"].isdigit()
        assert status["pricing"]["category"] == "service"


async def test_read_receipts_and_failed_sends_post_no_webhooks(
    whatsapp: httpx.AsyncClient, receiver: Receiver
) -> None:
    receipt = {"messaging_product": "whatsapp", "status": "read", "message_id": "wamid.z"}
    response = await whatsapp.post(
        f"/v21.0/{PHONE_NUMBER_ID}/messages",
        headers={"Authorization": "Bearer local-token"},
        json=receipt,
    )
    assert response.status_code == 200
    fault = {"kind": "graph_error", "code": 131047, "to": "4915100000043"}
    assert (await whatsapp.post("/_control/faults", json=fault)).status_code == 201
    assert (await post_text(whatsapp, "4915100000043")).status_code == 400

    await asyncio.sleep(0.4)
    assert receiver.posts.empty()


async def test_a_refused_delivery_is_logged_and_the_stand_in_carries_on(
    whatsapp: httpx.AsyncClient, receiver: Receiver
) -> None:
    wamid = await send(whatsapp, REFUSED_RECIPIENT)
    await asyncio.sleep(0.4)

    deliveries = (await whatsapp.get("/_control/webhooks")).json()["deliveries"]
    refused = [d for d in deliveries if d["wamid"] == wamid]
    assert [(d["status"], d["http_status"]) for d in refused] == [
        ("sent", 500),
        ("delivered", 500),
        ("read", 500),
    ]
    follow_up = await send(whatsapp, "4915100000044")
    _, raw = await receiver.next_post()
    assert status_of(raw)["id"] == follow_up
    for _ in range(2):
        await receiver.next_post()


async def test_the_request_log_can_be_cleared(whatsapp: httpx.AsyncClient) -> None:
    await send(whatsapp, "4915100000045")
    cleared = (await whatsapp.delete("/_control/requests")).json()["cleared"]
    assert cleared >= 1
    assert (await whatsapp.get("/_control/requests")).json()["requests"] == []
