"""A turn answers: the reply through the WhatsApp stand-in with typing around it, bursts and the
reply window gathered into one answer, contacts linked, the WhatsApp typing indicator, 360dialog
channels, and the webhook's correlation id carried into the job."""

from __future__ import annotations

import asyncio
import json
import time

import asyncpg
from arq import create_pool
from arq.jobs import Job

from bridge.api.signature import sign
from bridge.queue import inbound_job_id, redis_settings
from tests.factories import whatsapp as wa
from tests.fixtures.webhook import APP_SECRET, D360_SECRET, WebhookClient
from tests.fixtures.worker import (
    ACCESS_TOKEN,
    TypingWatcher,
    WhatsAppRecorder,
    Worker,
    eventually,
    make_workspace,
)
from tests.jobs.turns import conversation, outbound, say, texts_sent, typing_seen


async def test_a_message_is_answered_with_typing_around_the_reply(
    turn_db: asyncpg.Pool,
    inbox: WebhookClient,
    worker: Worker,
    whatsapp: WhatsAppRecorder,
    typing_watcher: TypingWatcher,
) -> None:
    ws = await make_workspace(turn_db)
    phone = wa.customer_phone()
    [wamid] = await say(inbox, ws.phone_number_id, phone, "hola", name="Ana")
    conv = await conversation(turn_db, ws.id, phone)
    await typing_watcher.watch(conv)

    assert await worker.burst() == 0

    assert await whatsapp.texts(phone) == ["Recibido (1): hola"]
    [reply] = await outbound(turn_db, conv)
    assert (reply["status"], reply["sent_by_agent"], reply["outbox_kind"]) == (
        "sent",
        True,
        "reply",
    )
    sent = await whatsapp.sends(phone)
    assert reply["wamid"] == sent[0]["response"]["body"]["messages"][0]["id"]
    assert sent[0]["headers"].get("authorization") == "Bearer test-graph-token"
    inbound = await turn_db.fetchrow("select * from public.messages where wamid = $1", wamid)
    assert inbound is not None
    assert inbound["processed_by_agent"] is True
    assert inbound["agent_turn_id"] == reply["agent_turn_id"]

    # The contact was created from the profile name and linked.
    contact = await turn_db.fetchrow(
        "select ct.* from public.contacts ct join public.conversations c on c.contact_id = ct.id"
        " where c.id = $1",
        conv,
    )
    assert contact is not None
    assert (contact["name"], contact["phone"]) == ("Ana", phone)

    # Typing: START (with an expiry) before the reply, STOP after.
    await eventually(lambda: typing_seen(typing_watcher, conv, 2))
    start, stop = typing_watcher.events[str(conv)]
    assert start["isTyping"] is True
    assert stop["isTyping"] is False
    assert start["source"] == stop["source"] == "agent"
    assert start["conversationId"] == str(conv)
    assert start["expiresAt"] is not None


async def test_a_burst_of_three_messages_gets_one_answer(
    turn_db: asyncpg.Pool,
    inbox: WebhookClient,
    worker: Worker,
    whatsapp: WhatsAppRecorder,
) -> None:
    ws = await make_workspace(turn_db)
    phone = wa.customer_phone()
    await say(inbox, ws.phone_number_id, phone, "hola", "quiero info", "¿precio?")
    assert await worker.burst() == 0
    assert await whatsapp.texts(phone) == ["Recibido (3): hola | quiero info | ¿precio?"]
    conv = await conversation(turn_db, ws.id, phone)
    turns = await turn_db.fetchval(
        "select count(*) from public.agent_turns t join public.agent_sessions s"
        " on s.id = t.session_id where s.conversation_id = $1 and t.role = 'assistant'",
        conv,
    )
    assert turns == 1


async def test_existing_contact_with_the_same_phone_is_linked_not_duplicated(
    turn_db: asyncpg.Pool,
    inbox: WebhookClient,
    worker: Worker,
) -> None:
    ws = await make_workspace(turn_db)
    phone = wa.customer_phone()
    existing = await turn_db.fetchval(
        "insert into public.contacts (workspace_id, name, phone) values ($1, 'Cliente VIP', $2)"
        " returning id",
        ws.id,
        phone,
    )
    await say(inbox, ws.phone_number_id, phone, "hola")
    assert await worker.burst() == 0
    conv = await conversation(turn_db, ws.id, phone)
    assert (
        await turn_db.fetchval("select contact_id from public.conversations where id = $1", conv)
        == existing
    )
    assert (
        await turn_db.fetchval(
            "select count(*) from public.contacts where workspace_id = $1", ws.id
        )
        == 1
    )


async def test_reply_window_waits_for_the_customer_to_pause(
    turn_db: asyncpg.Pool,
    inbox: WebhookClient,
    worker: Worker,
    whatsapp: WhatsAppRecorder,
) -> None:
    ws = await make_workspace(turn_db, reply_window_ms=1200)
    phone = wa.customer_phone()
    proc = await worker.start()
    try:
        await say(inbox, ws.phone_number_id, phone, "hola")
        await asyncio.sleep(0.4)
        await say(inbox, ws.phone_number_id, phone, "¿cuánto cuesta?")
        await eventually(lambda: texts_sent(whatsapp, phone, 1), within=15)
        await asyncio.sleep(0.5)
    finally:
        proc.terminate()
        await proc.wait()
    assert await whatsapp.texts(phone) == ["Recibido (2): hola | ¿cuánto cuesta?"]


async def test_whatsapp_typing_indicator_precedes_the_reply_when_the_workspace_wants_it(
    turn_db: asyncpg.Pool,
    inbox: WebhookClient,
    worker: Worker,
    whatsapp: WhatsAppRecorder,
) -> None:
    on = await make_workspace(turn_db, whatsapp_typing_indicator=True)
    off = await make_workspace(turn_db)
    phone_on, phone_off = wa.customer_phone(), wa.customer_phone()
    [wamid] = await say(inbox, on.phone_number_id, phone_on, "hola")
    await say(inbox, off.phone_number_id, phone_off, "hola")
    assert await worker.burst() == 0

    requests = [
        r for r in await whatsapp.requests(on.phone_number_id) if r["kind"] in ("typing", "send")
    ]
    assert [r["kind"] for r in requests] == ["typing", "send"]
    assert requests[0]["body"]["message_id"] == wamid
    assert requests[0]["body"]["typing_indicator"] == {"type": "text"}
    assert [r["kind"] for r in await whatsapp.requests(off.phone_number_id)] == ["send"]


async def test_a_360dialog_channel_sends_with_its_api_key(
    turn_db: asyncpg.Pool,
    inbox: WebhookClient,
    worker: Worker,
    whatsapp: WhatsAppRecorder,
) -> None:
    ws = await make_workspace(
        turn_db,
        provider="360dialog",
        api_base_url=f"{worker.stack.devstack_url}/whatsapp/360dialog",
    )
    phone = wa.customer_phone()
    msg = wa.text("hola", sender=phone, ts=int(time.time()))
    response = await inbox.post(
        wa.body(wa.change(ws.phone_number_id, messages=[msg])),
        secret=D360_SECRET,
        header="X-360Dialog-Signature",
    )
    assert response.status_code == 200
    assert await worker.burst() == 0
    [send] = await whatsapp.sends(phone)
    assert send["provider"] == "360dialog"
    assert send["headers"].get("d360-api-key") == ACCESS_TOKEN
    assert "authorization" not in send["headers"]
    assert send["response"]["status"] == 200


async def test_the_webhook_correlation_id_travels_into_the_job(
    turn_db: asyncpg.Pool,
    inbox: WebhookClient,
    worker: Worker,
) -> None:
    ws = await make_workspace(turn_db)
    msg = wa.text("hola", sender=wa.customer_phone(), ts=int(time.time()))
    raw = json.dumps(wa.body(wa.change(ws.phone_number_id, messages=[msg]))).encode()
    response = await inbox.http.post(
        "/webhooks/whatsapp",
        content=raw,
        headers={
            "content-type": "application/json",
            "x-request-id": "req-7f3a",
            "x-hub-signature-256": sign(raw, APP_SECRET),
        },
    )
    assert response.status_code == 200
    message_id = await turn_db.fetchval(
        "select id from public.messages where wamid = $1", msg["id"]
    )
    redis = await create_pool(redis_settings(worker.stack.redis_url))
    try:
        info = await Job(
            inbound_job_id(str(message_id)), redis, _queue_name=worker.queue_name
        ).info()
    finally:
        await redis.aclose()
    assert info is not None
    assert info.kwargs["correlation_id"] == "req-7f3a"
    assert info.kwargs["message_id"] == str(message_id)
