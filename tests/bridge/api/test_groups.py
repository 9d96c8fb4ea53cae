"""A message written in a WhatsApp group (`group_id`) lands in the group's own conversation, its
sender recorded on the message, never in the sender's one-to-one conversation; the agent answers
it, in the group, only when the workspace switches groups on. End to end through the signed
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


def in_group(group_id: str, sender: str, body: str, ts: int) -> dict[str, Any]:
    """A group message as the Cloud API delivers it: `from` is the participant who wrote."""
    return wa.text(body, sender=sender, ts=ts) | {"group_id": group_id}


def group_id() -> str:
    return f"{uuid.uuid4().int % 10**18:018d}@g.us"


async def test_a_group_message_gets_a_conversation_of_its_own_and_no_answer(
    db: asyncpg.Pool, inbox: WebhookClient, worker: Worker, whatsapp: WhatsAppRecorder
) -> None:
    ws = await make_workspace(db)
    ana, beto = wa.customer_phone(), wa.customer_phone()
    group = group_id()
    now = int(time.time())
    # Ana also writes privately: her one-to-one conversation stays hers alone.
    private = wa.text("hola, soy Ana", sender=ana, ts=now)
    first = wa.body(
        wa.change(ws.phone_number_id, messages=[private, in_group(group, ana, "¿precio?", now)])
    )
    assert (await inbox.post(first)).status_code == 200
    second = wa.body(
        wa.change(ws.phone_number_id, messages=[in_group(group, beto, "¿y envío?", now + 1)])
    )
    assert (await inbox.post(second)).status_code == 200
    assert (await inbox.post(second)).status_code == 200  # a redelivery stores nothing twice

    conv = await db.fetchrow(
        "select * from public.conversations where workspace_id = $1 and group_id = $2",
        ws.id,
        group,
    )
    assert conv is not None
    assert (conv["phone"], conv["bsuid"]) == (None, None)
    assert conv["unread_count"] == 2
    assert conv["last_message_preview"] == "¿y envío?"
    msgs = await db.fetch(
        "select * from public.messages where conversation_id = $1 order by timestamp, received_seq",
        conv["id"],
    )
    assert [json.loads(m["content"])["body"] for m in msgs] == ["¿precio?", "¿y envío?"]
    assert [m["sender_phone"] for m in msgs] == [ana, beto]
    assert [json.loads(m["content"]).get("senderName") for m in msgs] == [
        f"Cliente {ana[-4:]}",
        f"Cliente {beto[-4:]}",
    ]
    assert all(m["processed_by_agent"] and m["direction"] == "inbound" for m in msgs)

    private_rows = await db.fetch(
        "select m.content ->> 'body' as body from public.messages m join public.conversations c"
        " on c.id = m.conversation_id where c.workspace_id = $1 and c.phone = $2",
        ws.id,
        ana,
    )
    assert [r["body"] for r in private_rows] == ["hola, soy Ana"]
    assert not await db.fetchval(
        "select exists (select 1 from public.conversations where workspace_id = $1 and phone = $2)",
        ws.id,
        beto,
    )

    assert await worker.burst() == 0
    # Ana's private message is answered alone; nobody is answered for the group.
    assert await whatsapp.texts(ana) == ["Recibido (1): hola, soy Ana"]
    assert await whatsapp.texts(beto) == []
    assert await whatsapp.texts(group) == []


async def test_with_groups_switched_on_the_agent_answers_in_the_group(
    db: asyncpg.Pool, inbox: WebhookClient, worker: Worker, whatsapp: WhatsAppRecorder
) -> None:
    ws = await make_workspace(db, agent_answers_groups=True)
    ana, beto, group = wa.customer_phone(), wa.customer_phone(), group_id()
    now = int(time.time())
    body = wa.body(
        wa.change(
            ws.phone_number_id,
            messages=[in_group(group, ana, "hola", now), in_group(group, beto, "¿precio?", now)],
        )
    )
    assert (await inbox.post(body)).status_code == 200
    assert await worker.burst() == 0
    # One turn for the group, sent to the group (never privately to a participant).
    assert await whatsapp.texts(group) == ["Recibido (2): hola | ¿precio?"]
    assert await whatsapp.texts(ana) == await whatsapp.texts(beto) == []
    sends = await whatsapp.sends(group)
    assert [s["body"]["recipient_type"] for s in sends] == ["group"]


async def test_groups_are_off_by_default(db: asyncpg.Pool) -> None:
    ws = await make_workspace(db)
    assert (
        await db.fetchval(
            "select agent_answers_groups from public.workspace_agent_config where workspace_id = $1",
            ws.id,
        )
        is False
    )
