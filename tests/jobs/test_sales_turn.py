"""The sales engine end to end: webhook → real worker → the seed playbook's replies through the
WhatsApp stand-in, with typing around them; a request for an advisor ends in a handoff."""

from __future__ import annotations

import time
import uuid

import asyncpg

from tests.factories import whatsapp as wa
from tests.fixtures.webhook import WebhookClient
from tests.fixtures.worker import (
    TypingWatcher,
    WhatsAppRecorder,
    Worker,
    eventually,
    make_workspace,
)


async def _conversation(db: asyncpg.Pool, ws: uuid.UUID) -> uuid.UUID:
    conv: uuid.UUID = await db.fetchval(
        "select id from public.conversations where workspace_id = $1", ws
    )
    return conv


async def test_greeting_and_price_question_gets_the_price_replies(
    turn_db: asyncpg.Pool,
    inbox: WebhookClient,
    worker: Worker,
    whatsapp: WhatsAppRecorder,
    typing_watcher: TypingWatcher,
) -> None:
    ws = await make_workspace(turn_db, agent_id="somnio-sales-v1")
    phone = wa.customer_phone()
    msg = wa.text("hola, cuánto cuesta?", sender=phone, ts=int(time.time()))
    assert (
        await inbox.post(wa.body(wa.change(ws.phone_number_id, messages=[msg])))
    ).status_code == 200
    conv = await _conversation(turn_db, ws.id)
    await typing_watcher.watch(conv)
    assert await worker.burst() == 0

    texts = await whatsapp.texts(phone)
    assert texts[0].startswith("¡Hola!")
    assert any("$77,900" in t for t in texts), texts
    assert any("$109,900" in t and "$139,900" in t for t in texts), texts
    rows = await turn_db.fetch(
        "select status, sent_by_agent from public.messages where conversation_id = $1"
        " and direction = 'outbound'",
        conv,
    )
    assert len(rows) == len(texts)
    assert all(r["status"] == "sent" and r["sent_by_agent"] for r in rows)
    await eventually(lambda: _events(typing_watcher, conv, 2))
    events = typing_watcher.events[str(conv)]
    assert [e["isTyping"] for e in events] == [True, False]


async def _events(watcher: TypingWatcher, conv: uuid.UUID, n: int) -> bool:
    return len(watcher.events.get(str(conv), [])) >= n


async def test_asking_for_an_advisor_hands_off_to_an_online_member(
    turn_db: asyncpg.Pool,
    inbox: WebhookClient,
    worker: Worker,
    whatsapp: WhatsAppRecorder,
) -> None:
    ws = await make_workspace(turn_db, agent_id="somnio-sales-v1")
    phone = wa.customer_phone()
    msg = wa.text("quiero hablar con un asesor", sender=phone, ts=int(time.time()))
    assert (
        await inbox.post(wa.body(wa.change(ws.phone_number_id, messages=[msg])))
    ).status_code == 200
    assert await worker.burst() == 0
    conv = await _conversation(turn_db, ws.id)
    task = await turn_db.fetchrow("select * from public.tasks where conversation_id = $1", conv)
    assert task is not None
    assert task["priority"] == "high"
    assert task["assigned_to"] in ws.agents
    assert (
        await turn_db.fetchval(
            "select agent_conversational from public.conversations where id = $1", conv
        )
        is False
    )
    texts = await whatsapp.texts(phone)
    assert texts[-1] == "Regálame 1 min, ya te comunico con un asesor"
