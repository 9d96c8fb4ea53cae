"""A customer's messages reach the turn and the inbox in the order they were written: messages of
one webhook share a timestamp (seconds), and their position in the body breaks the tie."""

from __future__ import annotations

import time

import asyncpg

from tests.factories import whatsapp as wa
from tests.fixtures.webhook import WebhookClient
from tests.fixtures.worker import WhatsAppRecorder, Worker, make_workspace
from tests.jobs.turns import conversation

WORDS = ["uno", "dos", "tres", "cuatro", "cinco"]


async def _burst_in_one_second(inbox: WebhookClient, pnid: str, phone: str) -> None:
    now = int(time.time())
    msgs = [wa.text(word, sender=phone, ts=now) for word in WORDS]
    response = await inbox.post(wa.body(wa.change(pnid, messages=msgs)))
    assert response.status_code == 200, response.text


async def test_a_burst_of_five_in_one_webhook_is_answered_in_the_order_written(
    turn_db: asyncpg.Pool, inbox: WebhookClient, worker: Worker, whatsapp: WhatsAppRecorder
) -> None:
    # Several conversations: random ids broke ties before, so one of them alone could pass.
    ws = await make_workspace(turn_db)
    phones = [wa.customer_phone() for _ in range(4)]
    for phone in phones:
        await _burst_in_one_second(inbox, ws.phone_number_id, phone)

    assert await worker.burst() == 0

    expected = f"Recibido (5): {' | '.join(WORDS)}"
    for phone in phones:
        assert await whatsapp.texts(phone) == [expected]


async def test_the_inbox_order_is_the_order_written(
    turn_db: asyncpg.Pool, inbox: WebhookClient
) -> None:
    ws = await make_workspace(turn_db, enabled=False)
    phone = wa.customer_phone()
    for _ in range(3):
        await _burst_in_one_second(inbox, ws.phone_number_id, phone)
    conv = await conversation(turn_db, ws.id, phone)

    # The inbox reads newest first through the (conversation_id, timestamp, received_seq) index.
    rows = await turn_db.fetch(
        "select content ->> 'body' as body from public.messages where conversation_id = $1"
        " order by timestamp desc, received_seq desc",
        conv,
    )
    assert [r["body"] for r in reversed(rows)] == WORDS * 3
    async with turn_db.acquire() as conn, conn.transaction():
        # Small tables are scanned whatever the indexes: ask whether one can serve the order.
        await conn.execute("set local enable_seqscan = off; set local enable_sort = off")
        plan = await conn.fetchval(
            "explain (format json) select id from public.messages where conversation_id = $1"
            " order by timestamp desc, received_seq desc limit 50",
            conv,
        )
    assert "messages_conversation_id_timestamp_idx" in str(plan)
    assert "Sort" not in str(plan)
