"""A coexistence history backfill (`history` webhook field, up to 180 days of the Business app's
chats) is stored as history: the thread messages too, each with its direction, never handed to
the agent, never moving a conversation's last message backwards. End to end through the signed
webhook and the real worker."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import asyncpg

from tests.factories import whatsapp as wa
from tests.fixtures.webhook import WebhookClient
from tests.fixtures.worker import WhatsAppRecorder, Worker, make_workspace

BUSINESS = "15550001111"  # the display number wa.change() gives the channel
DAY = 86_400


def history_change(pnid: str, threads: list[dict[str, Any]]) -> dict[str, Any]:
    """Meta's `history` change: chunks of threads, one per customer, each with its messages."""
    return {
        "field": "history",
        "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": BUSINESS, "phone_number_id": pnid},
            "history": [
                {"metadata": {"phase": 1, "chunk_order": 1, "progress": 55}, "threads": threads}
            ],
        },
    }


def said(customer: str, body: str, ts: int, *, by_business: bool = False) -> dict[str, Any]:
    msg: dict[str, Any] = {
        "from": BUSINESS if by_business else customer,
        "id": wa.wamid(),
        "timestamp": str(ts),
        "type": "text",
        "text": {"body": body},
        "history_context": {"status": "READ" if by_business else "DELIVERED"},
    }
    if by_business:
        msg["to"] = customer
    return msg


async def rows(db: asyncpg.Pool, workspace_id: uuid.UUID, phone: str) -> list[asyncpg.Record]:
    return await db.fetch(
        "select m.* from public.messages m join public.conversations c"
        " on c.id = m.conversation_id where c.workspace_id = $1 and c.phone = $2"
        " order by m.timestamp, m.received_seq",
        workspace_id,
        phone,
    )


async def conversation(db: asyncpg.Pool, workspace_id: uuid.UUID, phone: str) -> asyncpg.Record:
    row = await db.fetchrow(
        "select * from public.conversations where workspace_id = $1 and phone = $2",
        workspace_id,
        phone,
    )
    assert row is not None
    return row


async def test_thread_messages_are_stored_with_their_direction_and_not_answered(
    db: asyncpg.Pool, inbox: WebhookClient, worker: Worker, whatsapp: WhatsAppRecorder
) -> None:
    ws = await make_workspace(db)
    phone = wa.customer_phone()
    now = int(time.time())
    old = [
        said(phone, "hola, ¿tienen envíos?", now - 30 * DAY),
        said(phone, "sí, a todo el país", now - 30 * DAY + 60, by_business=True),
        said(phone, "gracias", now - 30 * DAY + 120),
    ]
    body = wa.body(history_change(ws.phone_number_id, [{"id": phone, "messages": old}]))

    assert (await inbox.post(body)).status_code == 200
    assert (await inbox.post(body)).status_code == 200  # a redelivery stores nothing twice

    stored = await rows(db, ws.id, phone)
    assert [r["wamid"] for r in stored] == [m["id"] for m in old]
    assert [r["direction"] for r in stored] == ["inbound", "outbound", "inbound"]
    assert [json.loads(r["content"])["body"] for r in stored] == [
        "hola, ¿tienen envíos?",
        "sí, a todo el país",
        "gracias",
    ]
    assert all(r["processed_by_agent"] and r["from_history"] for r in stored)
    assert stored[1]["status"] == "read"
    assert stored[1]["sent_by_agent"] is False
    conv = await conversation(db, ws.id, phone)
    assert conv["unread_count"] == 0

    assert await worker.burst() == 0
    assert await whatsapp.texts(phone) == []


async def test_history_never_moves_the_last_message_back_and_a_live_one_is_answered_alone(
    db: asyncpg.Pool, inbox: WebhookClient, worker: Worker, whatsapp: WhatsAppRecorder
) -> None:
    ws = await make_workspace(db)
    phone = wa.customer_phone()
    now = int(time.time())
    live = wa.body(wa.change(ws.phone_number_id, messages=[wa.text("hola", sender=phone, ts=now)]))
    assert (await inbox.post(live)).status_code == 200
    before = await conversation(db, ws.id, phone)

    old = [said(phone, "mensaje de hace meses", now - 90 * DAY)]
    backfill = wa.body(history_change(ws.phone_number_id, [{"id": phone, "messages": old}]))
    assert (await inbox.post(backfill)).status_code == 200

    after = await conversation(db, ws.id, phone)
    assert after["last_message_at"] == before["last_message_at"]
    assert after["last_message_preview"] == "hola"
    assert after["unread_count"] == before["unread_count"] == 1

    assert await worker.burst() == 0
    assert await whatsapp.texts(phone) == ["Recibido (1): hola"]


async def test_messages_carried_by_a_history_change_are_history(
    db: asyncpg.Pool, inbox: WebhookClient, worker: Worker, whatsapp: WhatsAppRecorder
) -> None:
    ws = await make_workspace(db)
    phone = wa.customer_phone()
    change = wa.change(
        ws.phone_number_id, messages=[wa.text("de antes", sender=phone, ts=int(time.time()) - DAY)]
    )
    change["field"] = "history"

    assert (await inbox.post(wa.body(change))).status_code == 200

    [row] = await rows(db, ws.id, phone)
    assert (row["direction"], row["processed_by_agent"], row["from_history"]) == (
        "inbound",
        True,
        True,
    )
    assert await worker.burst() == 0
    assert await whatsapp.texts(phone) == []
