"""A human takes over from the WhatsApp Business app: the echo of their reply, through the signed
webhook, pauses the bot for that conversation by the workspace's policy; the customer's next
messages are handled but not answered, a bot reply still queued is not sent, and the bot answers
again once the pause ends or a member resumes it."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import asyncpg

from tests.factories import whatsapp as wa
from tests.fixtures.webhook import WebhookClient
from tests.fixtures.worker import WhatsAppRecorder, Worker, eventually, make_workspace
from tests.jobs.turns import conversation, outbound, say, settled, texts_sent


async def echo(inbox: WebhookClient, pnid: str, phone: str, text: str) -> str:
    """The business replies to `phone` from the WhatsApp Business app; returns the wamid."""
    message = {
        "from": "15550001111",
        "to": phone,
        "id": wa.wamid(),
        "timestamp": str(int(time.time())),
        "type": "text",
        "text": {"body": text},
    }
    change = wa.change(pnid, contacts=[{"wa_id": phone}])
    change["field"] = "smb_message_echoes"
    change["value"]["message_echoes"] = [message]
    response = await inbox.post(wa.body(change))
    assert response.status_code == 200, response.text
    return str(message["id"])


async def paused_until(db: asyncpg.Pool, conv: object) -> datetime | None:
    value: datetime | None = await db.fetchval(
        "select bot_paused_until from public.conversations where id = $1", conv
    )
    return value


async def test_an_echo_pauses_the_bot_and_the_customer_is_not_answered(
    turn_db: asyncpg.Pool, inbox: WebhookClient, worker: Worker, whatsapp: WhatsAppRecorder
) -> None:
    ws = await make_workspace(turn_db)
    phone = wa.customer_phone()
    await say(inbox, ws.phone_number_id, phone, "hola")
    assert await worker.burst() == 0
    conv = await conversation(turn_db, ws.id, phone)
    await echo(inbox, ws.phone_number_id, phone, "Hola, te atiendo yo")
    paused = await paused_until(turn_db, conv)
    assert paused is not None
    # The default policy: 30 minutes from the echo.
    assert abs(paused - datetime.now(UTC) - timedelta(minutes=30)) < timedelta(seconds=30)
    await say(inbox, ws.phone_number_id, phone, "gracias", "¿y el envío?")
    assert await worker.burst() == 0
    assert await whatsapp.texts(phone) == ["Recibido (1): hola"]
    assert await turn_db.fetchval(
        "select bool_and(processed_by_agent) from public.messages"
        " where conversation_id = $1 and direction = 'inbound'",
        conv,
    )
    assert (
        await turn_db.fetchval(
            "select agent_conversational from public.conversations where id = $1", conv
        )
        is None
    )

    # Once the pause is over the bot answers again.
    await turn_db.execute(
        "update public.conversations set bot_paused_until = now() - interval '1 second'"
        " where id = $1",
        conv,
    )
    await say(inbox, ws.phone_number_id, phone, "¿sigues ahí?")
    assert await worker.burst() == 0
    assert (await whatsapp.texts(phone))[-1] == "Recibido (1): ¿sigues ahí?"


async def test_with_takeover_off_an_echo_does_not_pause_the_bot(
    turn_db: asyncpg.Pool, inbox: WebhookClient, worker: Worker, whatsapp: WhatsAppRecorder
) -> None:
    ws = await make_workspace(turn_db, human_takeover="off")
    phone = wa.customer_phone()
    await echo(inbox, ws.phone_number_id, phone, "Hola, ¿en qué te ayudo?")
    await say(inbox, ws.phone_number_id, phone, "hola")
    assert await worker.burst() == 0
    assert await paused_until(turn_db, await conversation(turn_db, ws.id, phone)) is None
    assert await whatsapp.texts(phone) == ["Recibido (1): hola"]


async def test_until_resumed_holds_the_bot_until_a_member_resumes_it(
    turn_db: asyncpg.Pool, inbox: WebhookClient, worker: Worker, whatsapp: WhatsAppRecorder
) -> None:
    ws = await make_workspace(turn_db, human_takeover="until_resumed")
    phone = wa.customer_phone()
    await say(inbox, ws.phone_number_id, phone, "hola")
    conv = await conversation(turn_db, ws.id, phone)
    await echo(inbox, ws.phone_number_id, phone, "Te atiendo yo")
    assert await paused_until(turn_db, conv) == datetime.max  # asyncpg's 'infinity'
    assert await worker.burst() == 0
    assert await whatsapp.texts(phone) == []
    async with turn_db.acquire() as conn, conn.transaction():
        await conn.execute(
            "select set_config('request.jwt.claims', $1, true),"
            " set_config('role', 'authenticated', true)",
            f'{{"role": "authenticated", "sub": "{ws.agents[0]}"}}',
        )
        await conn.execute("select public.resume_bot($1)", conv)
    await say(inbox, ws.phone_number_id, phone, "¿hola?")
    assert await worker.burst() == 0
    assert await whatsapp.texts(phone) == ["Recibido (1): ¿hola?"]


async def test_a_queued_bot_reply_is_not_sent_after_an_echo(
    turn_db: asyncpg.Pool, inbox: WebhookClient, worker: Worker, whatsapp: WhatsAppRecorder
) -> None:
    ws = await make_workspace(turn_db, response_speed=1.0)
    phone = wa.customer_phone()
    await say(inbox, ws.phone_number_id, phone, "hola #replies=3 #delay=1500")
    conv = await conversation(turn_db, ws.id, phone)
    proc = await worker.start()
    try:
        await eventually(lambda: texts_sent(whatsapp, phone, 1), within=15)
        await echo(inbox, ws.phone_number_id, phone, "Hola, soy Laura")
        await eventually(lambda: settled(turn_db, conv), within=15)
    finally:
        proc.terminate()
        await proc.wait()
    assert len(await whatsapp.texts(phone)) == 1
    bot = [r for r in await outbound(turn_db, conv) if r["sent_by_agent"]]
    assert [r["status"] for r in bot] == ["sent", "skipped", "skipped"]
    assert {r["skip_reason"] for r in bot[1:]} == {"human took over"}
