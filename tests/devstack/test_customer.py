"""`python -m devstack.customer`: the body it posts is a signed Meta webhook the bridge parses into
one text message from the customer, and its exit code says whether the bridge took it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from bridge.api.payloads import Webhook
from bridge.api.signature import META_HEADER, is_valid
from devstack.customer import main
from tests.fixtures.devstack import free_port

SECRET = "customer-test-secret"


@pytest.fixture
async def bridge_double() -> AsyncIterator[tuple[str, list[tuple[bytes, str]]]]:
    """A webhook endpoint that records what it was sent and answers like the bridge: 200 for a
    good signature, 401 otherwise."""
    seen: list[tuple[bytes, str]] = []

    async def webhook(request: web.Request) -> web.Response:
        body = await request.read()
        header = request.headers.get(META_HEADER, "")
        seen.append((body, header))
        if not is_valid(body, header, SECRET):
            return web.json_response({"error": "bad_signature"}, status=401)
        return web.json_response({"received": True})

    app = web.Application()
    app.router.add_post("/webhooks/whatsapp", webhook)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}", seen
    finally:
        await runner.cleanup()


async def test_the_customer_posts_a_signed_text_message(
    bridge_double: tuple[str, list[tuple[bytes, str]]],
) -> None:
    url, seen = bridge_double
    argv = ["hola, ¿cuánto cuesta? 👋", "--bridge-url", url, "--app-secret", SECRET]
    argv += ["--phone-number-id", "1000000000000009", "--from", "573009998877", "--name", "Ana"]
    assert await asyncio.to_thread(main, argv) == 0
    [(body, header)] = seen
    assert is_valid(body, header, SECRET)
    batch = Webhook.model_validate_json(body).normalise()
    [message] = batch.messages
    assert message["phone_number_id"] == "1000000000000009"
    assert message["phone"] == "573009998877"
    assert message["profile_name"] == "Ana"
    assert message["type"] == "text"
    assert message["content"]["body"] == "hola, ¿cuánto cuesta? 👋"
    assert message["wamid"].startswith("wamid.")


async def test_a_refused_post_is_a_failing_exit(
    bridge_double: tuple[str, list[tuple[bytes, str]]],
) -> None:
    url, seen = bridge_double
    argv = ["hola", "--bridge-url", url, "--app-secret", "not-the-bridge-secret"]
    assert await asyncio.to_thread(main, argv) == 1
    assert len(seen) == 1
