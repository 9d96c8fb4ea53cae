"""After the phone's and the BSUID's conversations are merged, the real worker answers the
customer once, in the surviving conversation, for every message either held."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from tests.bridge.api.test_identity import Customer, new_customer, post_body
from tests.fixtures.postgres import RUN_ID
from tests.fixtures.webhook import WebhookClient, open_webhook_client, settings_for
from tests.fixtures.worker import TurnStack, WhatsAppRecorder, Worker, make_workspace


@pytest.fixture
def worker(database_url: str, devstack_url: str, redis_url: str) -> Worker:
    stack = TurnStack(database_url, devstack_url, redis_url)
    return Worker(stack, f"arq:queue:test-{RUN_ID}-{uuid.uuid4().hex[:8]}")


@pytest.fixture
async def inbox(worker: Worker) -> AsyncIterator[WebhookClient]:
    stack = worker.stack
    client, close = await open_webhook_client(
        settings_for(stack.devstack_url, stack.redis_url, worker.queue_name)
    )
    try:
        yield client
    finally:
        await close()


@pytest.fixture
async def whatsapp(devstack_url: str) -> AsyncIterator[WhatsAppRecorder]:
    recorder = WhatsAppRecorder(devstack_url)
    yield recorder
    await recorder.aclose()


async def test_a_merged_customer_is_answered_once_in_the_survivor(
    db: asyncpg.Pool, inbox: WebhookClient, worker: Worker, whatsapp: WhatsAppRecorder
) -> None:
    ws = await make_workspace(db)
    ana: Customer = new_customer()
    now = int(time.time())
    # Her phone's and her BSUID's messages wait in two conversations, each with its job queued,
    # until a message naming both shows they are one customer.
    for i, (shape, text) in enumerate([("P", "hola"), ("B", "precio?"), ("PB", "gracias")]):
        response = await inbox.post(post_body(ws.phone_number_id, ana.writes(shape, text, now + i)))
        assert response.status_code == 200
        assert response.json().get("failed") is not True

    convs = await db.fetch("select id from public.conversations where workspace_id = $1", ws.id)
    assert len(convs) == 1
    survivor = convs[0]["id"]
    merged = await db.fetchval(
        "select merged_id from public.conversation_merges where workspace_id = $1"
        " and kind = 'conversation'",
        ws.id,
    )
    assert merged is not None
    assert merged != survivor

    assert await worker.burst() == 0
    assert await whatsapp.texts(ana.phone) == ["Recibido (3): hola | precio? | gracias"]
    assert (
        await db.fetchval(
            "select count(*) from public.messages where conversation_id = $1"
            " and direction = 'inbound' and not processed_by_agent",
            survivor,
        )
        == 0
    )
    # A redelivered job of the merged conversation finds nothing to do.
    assert await worker.burst() == 0
    assert len(await whatsapp.texts(ana.phone)) == 1
