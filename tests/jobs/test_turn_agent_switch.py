"""When the agent may not answer: switched off for the workspace or the conversation, switched off
by a human in the middle of a turn, or overtaken by a newer message mid-turn."""

from __future__ import annotations

import asyncpg

from tests.factories import whatsapp as wa
from tests.fixtures.webhook import WebhookClient
from tests.fixtures.worker import WhatsAppRecorder, Worker, eventually, make_workspace
from tests.jobs.turns import conversation, outbound, say, settled, texts_sent


async def test_agent_disabled_marks_processed_and_sends_nothing(
    turn_db: asyncpg.Pool,
    inbox: WebhookClient,
    worker: Worker,
    whatsapp: WhatsAppRecorder,
) -> None:
    off = await make_workspace(turn_db, enabled=False)
    on = await make_workspace(turn_db)
    cases = {  # phone -> (workspace, conversation override)
        wa.customer_phone(): (off, None),
        wa.customer_phone(): (off, True),  # global off wins over a conversation's true
        wa.customer_phone(): (on, False),  # the conversation's false wins
    }
    for phone, (ws, _) in cases.items():
        await say(inbox, ws.phone_number_id, phone, "hola")
    for phone, (ws, override) in cases.items():
        await turn_db.execute(
            "update public.conversations set agent_conversational = $3"
            " where workspace_id = $1 and phone = $2",
            ws.id,
            phone,
            override,
        )
    assert await worker.burst() == 0
    for phone, (ws, _) in cases.items():
        assert await whatsapp.sends(phone) == []
        conv = await conversation(turn_db, ws.id, phone)
        assert await outbound(turn_db, conv) == []
        assert (
            await turn_db.fetchval(
                "select bool_and(processed_by_agent) from public.messages where conversation_id = $1",
                conv,
            )
            is True
        )


async def test_turning_the_agent_off_mid_turn_stops_the_remaining_replies(
    turn_db: asyncpg.Pool,
    inbox: WebhookClient,
    worker: Worker,
    whatsapp: WhatsAppRecorder,
) -> None:
    ws = await make_workspace(turn_db, response_speed=1.0)
    phone = wa.customer_phone()
    await say(inbox, ws.phone_number_id, phone, "hola #replies=3 #delay=1500")
    conv = await conversation(turn_db, ws.id, phone)
    proc = await worker.start()
    try:
        await eventually(lambda: texts_sent(whatsapp, phone, 1), within=15)
        # A human writes from the inbox and switches the bot off for this conversation.
        human = await turn_db.fetchval(
            "insert into public.messages (workspace_id, conversation_id, direction, type, content,"
            " status) values ($1, $2, 'outbound', 'text', '{\"body\": \"Hola, soy Laura\"}', 'sent')"
            " returning id",
            ws.id,
            conv,
        )
        await turn_db.execute(
            "update public.conversations set agent_conversational = false where id = $1", conv
        )
        await eventually(lambda: settled(turn_db, conv), within=15)
    finally:
        proc.terminate()
        await proc.wait()
    assert len(await whatsapp.texts(phone)) == 1
    rows = [r for r in await outbound(turn_db, conv) if r["id"] != human]
    assert [r["status"] for r in rows] == ["sent", "skipped", "skipped"]
    assert all(r["skip_reason"] == "agent disabled" for r in rows[1:])
    assert (
        await turn_db.fetchval("select sent_by_agent from public.messages where id = $1", human)
        is False
    )
    assert (
        await turn_db.fetchval("select count(*) from public.tasks where conversation_id = $1", conv)
        == 0
    )


async def test_a_newer_message_mid_turn_cancels_the_rest_and_is_answered_next(
    turn_db: asyncpg.Pool,
    inbox: WebhookClient,
    worker: Worker,
    whatsapp: WhatsAppRecorder,
) -> None:
    ws = await make_workspace(turn_db, response_speed=1.0)
    phone = wa.customer_phone()
    await say(inbox, ws.phone_number_id, phone, "hola #replies=3 #delay=1500")
    conv = await conversation(turn_db, ws.id, phone)
    proc = await worker.start()
    try:
        await eventually(lambda: texts_sent(whatsapp, phone, 1), within=15)
        await say(inbox, ws.phone_number_id, phone, "otra cosa")
        await eventually(lambda: texts_sent(whatsapp, phone, 2), within=15)
        await eventually(lambda: settled(turn_db, conv), within=15)
    finally:
        proc.terminate()
        await proc.wait()
    texts = await whatsapp.texts(phone)
    assert texts[0] == "Recibido (1): hola #replies=3 #delay=1500"
    assert texts[-1] == "Recibido (1): otra cosa"
    statuses = [r["status"] for r in await outbound(turn_db, conv)]
    assert statuses.count("skipped") >= 1
    assert "pending" not in statuses
