"""Reactions, edits and revokes act on the message they target instead of being new messages the
agent answers: a reaction is kept on the target, an edit replaces its content keeping the first
version, a revoke marks it revoked. Shapes as the Cloud API delivers them (see pywa's
edited_message.json, deleted_message.json and message.json reaction samples in tests/data/).
End to end through the signed webhook and the real worker."""

from __future__ import annotations

import json
import time
from typing import Any

import asyncpg

from tests.factories import whatsapp as wa
from tests.fixtures.webhook import WebhookClient
from tests.fixtures.worker import WhatsAppRecorder, Worker, make_workspace


def reaction(sender: str, target: str, emoji: str) -> dict[str, Any]:
    return wa.typed_message("reaction", {"message_id": target, "emoji": emoji}, sender=sender)


def edit(sender: str, target: str, body: str) -> dict[str, Any]:
    inner = {"type": "text", "text": {"body": body}}
    return wa.typed_message(
        "edit", {"original_message_id": target, "message": inner}, sender=sender
    )


def revoke(sender: str, target: str) -> dict[str, Any]:
    return wa.typed_message("revoke", {"original_message_id": target}, sender=sender)


async def post(inbox: WebhookClient, pnid: str, *msgs: dict[str, Any]) -> None:
    response = await inbox.post(wa.body(wa.change(pnid, messages=list(msgs))))
    assert response.status_code == 200, response.text


async def message(db: asyncpg.Pool, wamid: str) -> asyncpg.Record:
    row = await db.fetchrow("select * from public.messages where wamid = $1", wamid)
    assert row is not None
    return row


async def test_a_reaction_is_kept_on_its_target_and_not_answered(
    db: asyncpg.Pool, inbox: WebhookClient, worker: Worker, whatsapp: WhatsAppRecorder
) -> None:
    ws = await make_workspace(db)
    phone = wa.customer_phone()
    hola = wa.text("hola", sender=phone, ts=int(time.time()))
    await post(inbox, ws.phone_number_id, hola)
    assert await worker.burst() == 0
    assert await whatsapp.texts(phone) == ["Recibido (1): hola"]
    [reply] = await db.fetch(
        "select wamid from public.messages where wamid is not null and direction = 'outbound'"
        " and conversation_id = (select conversation_id from public.messages where wamid = $1)",
        hola["id"],
    )

    preview = "select last_message_preview from public.conversations where id = $1"
    conv = await db.fetchval(
        "select conversation_id from public.messages where wamid = $1", hola["id"]
    )
    before = await db.fetchval(preview, conv)

    # The customer reacts to their own message and to the bot's reply.
    on_hola, on_reply = reaction(phone, hola["id"], "👍"), reaction(phone, reply["wamid"], "❤️")
    await post(inbox, ws.phone_number_id, on_hola, on_reply)
    assert await worker.burst() == 0
    assert await whatsapp.texts(phone) == ["Recibido (1): hola"]

    target = await message(db, hola["id"])
    assert json.loads(target["reactions"])[phone]["emoji"] == "👍"
    assert json.loads((await message(db, reply["wamid"]))["reactions"])[phone]["emoji"] == "❤️"
    row = await message(db, on_hola["id"])
    assert (row["processed_by_agent"], row["context_wamid"]) == (True, hola["id"])
    assert await db.fetchval(preview, conv) == before  # a reaction is not the last message

    # An empty emoji takes the reaction back.
    await post(inbox, ws.phone_number_id, reaction(phone, hola["id"], ""))
    assert json.loads((await message(db, hola["id"]))["reactions"]) == {}
    assert await worker.burst() == 0
    assert await whatsapp.texts(phone) == ["Recibido (1): hola"]


async def test_an_edit_replaces_the_content_keeping_the_original_and_is_not_answered(
    db: asyncpg.Pool, inbox: WebhookClient, worker: Worker, whatsapp: WhatsAppRecorder
) -> None:
    ws = await make_workspace(db)
    phone = wa.customer_phone()
    first = wa.text("quiero 2", sender=phone, ts=int(time.time()))
    await post(inbox, ws.phone_number_id, first)
    assert await worker.burst() == 0

    change = edit(phone, first["id"], "quiero 3")
    await post(inbox, ws.phone_number_id, change)

    target = await message(db, first["id"])
    content = json.loads(target["content"])
    assert content["body"] == "quiero 3"
    assert content["original"]["body"] == "quiero 2"
    assert target["edited_at"] is not None
    assert (await message(db, change["id"]))["processed_by_agent"] is True
    assert await worker.burst() == 0
    assert await whatsapp.texts(phone) == ["Recibido (1): quiero 2"]


async def test_a_revoke_marks_its_target_and_is_not_answered(
    db: asyncpg.Pool, inbox: WebhookClient, worker: Worker, whatsapp: WhatsAppRecorder
) -> None:
    ws = await make_workspace(db)
    phone = wa.customer_phone()
    first = wa.text("mi dirección es ...", sender=phone, ts=int(time.time()))
    await post(inbox, ws.phone_number_id, first)
    assert await worker.burst() == 0

    await post(inbox, ws.phone_number_id, revoke(phone, first["id"]))

    target = await message(db, first["id"])
    assert target["revoked_at"] is not None
    assert json.loads(target["content"])["body"] == "mi dirección es ..."  # kept for the record
    assert await worker.burst() == 0
    assert await whatsapp.texts(phone) == ["Recibido (1): mi dirección es ..."]


async def test_nobody_acts_on_another_conversations_message(
    db: asyncpg.Pool, inbox: WebhookClient
) -> None:
    ws = await make_workspace(db, enabled=False)
    victim, other = wa.customer_phone(), wa.customer_phone()
    first = wa.text("pedido confirmado", sender=victim, ts=int(time.time()))
    await post(inbox, ws.phone_number_id, first)

    await post(
        inbox,
        ws.phone_number_id,
        reaction(other, first["id"], "😡"),
        edit(other, first["id"], "pedido cancelado"),
        revoke(other, first["id"]),
    )

    target = await message(db, first["id"])
    assert json.loads(target["reactions"]) == {}
    assert json.loads(target["content"])["body"] == "pedido confirmado"
    assert (target["edited_at"], target["revoked_at"]) == (None, None)
