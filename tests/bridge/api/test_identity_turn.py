"""After the phone's and the BSUID's conversations are merged, the real worker answers the
customer once, in the surviving conversation, for every message either held."""

from __future__ import annotations

import time

import asyncpg

from tests.bridge.api.test_identity import Customer, new_customer, post_body
from tests.fixtures.webhook import WebhookClient
from tests.fixtures.worker import WhatsAppRecorder, Worker, make_workspace


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
