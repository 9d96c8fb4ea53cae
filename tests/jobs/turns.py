"""What the agent-turn tests (tests/jobs/test_turn_*.py) share: posting a customer's messages to the
webhook, reading the conversation and its outbound messages, and the conditions they wait for."""

from __future__ import annotations

import time
import uuid

import asyncpg

from tests.factories import whatsapp as wa
from tests.fixtures.webhook import WebhookClient
from tests.fixtures.worker import TypingWatcher, WhatsAppRecorder


async def say(
    inbox: WebhookClient, pnid: str, phone: str, *texts: str, name: str | None = None
) -> list[str]:
    """The customer at `phone` writes `texts` in one signed webhook; returns their wamids."""
    now = int(time.time())
    msgs = [wa.text(t, sender=phone, ts=now + i) for i, t in enumerate(texts)]
    contacts = [{"profile": {"name": name}, "wa_id": phone}] if name else None
    response = await inbox.post(wa.body(wa.change(pnid, messages=msgs, contacts=contacts)))
    assert response.status_code == 200, response.text
    return [m["id"] for m in msgs]


async def conversation(db: asyncpg.Pool, workspace_id: uuid.UUID, phone: str) -> uuid.UUID:
    conv: uuid.UUID = await db.fetchval(
        "select id from public.conversations where workspace_id = $1 and phone = $2",
        workspace_id,
        phone,
    )
    assert conv is not None
    return conv


async def outbound(db: asyncpg.Pool, conv: uuid.UUID) -> list[asyncpg.Record]:
    return await db.fetch(
        "select * from public.messages where conversation_id = $1 and direction = 'outbound'"
        " order by created_at, outbox_position",
        conv,
    )


async def replies(db: asyncpg.Pool, conv: uuid.UUID) -> list[asyncpg.Record]:
    """The conversation's bot replies (not the handoff message), in sending order."""
    return [r for r in await outbound(db, conv) if r["outbox_kind"] == "reply"]


async def handoff_tasks(db: asyncpg.Pool, conv: uuid.UUID) -> list[str]:
    """The descriptions (they carry the reason) of the conversation's handoff tasks."""
    rows = await db.fetch(
        "select description from public.tasks where conversation_id = $1 and type = 'handoff'",
        conv,
    )
    return [r["description"] for r in rows]


async def typing_seen(watcher: TypingWatcher, conv: uuid.UUID, n: int) -> bool:
    """At least `n` typing broadcasts reached the conversation's channel."""
    return len(watcher.events.get(str(conv), [])) >= n


async def texts_sent(whatsapp: WhatsAppRecorder, phone: str, n: int) -> bool:
    """The WhatsApp stand-in accepted at least `n` texts to `phone`."""
    return len(await whatsapp.texts(phone)) >= n


async def settled(db: asyncpg.Pool, conv: uuid.UUID) -> bool:
    """No message of the conversation is still waiting to be sent or being sent."""
    return not await db.fetchval(
        "select exists (select 1 from public.messages where conversation_id = $1"
        " and status in ('pending', 'sending'))",
        conv,
    )


async def all_processed(db: asyncpg.Pool, conv: uuid.UUID) -> bool:
    """All twenty inbound messages of the conversation were consumed by a turn."""
    return bool(
        await db.fetchval(
            "select count(*) = 20 and bool_and(processed_by_agent) from public.messages"
            " where conversation_id = $1 and direction = 'inbound'",
            conv,
        )
    )
