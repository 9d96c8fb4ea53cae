"""Inbox rows for the table and Auth tests: conversations with a contact and messages in the
seed's two workspaces (Demo Store and Other Shop), made as the intake makes them (superuser)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import asyncpg

DEMO_STORE = uuid.UUID("10000000-0000-4000-8000-000000000001")
OTHER_SHOP = uuid.UUID("10000000-0000-4000-8000-000000000002")
DEMO_PASSWORD = "demo-password"
ANA = "ana@demo-store.test"  # an agent of Demo Store
ANA_ID = uuid.UUID("00000000-0000-4000-8000-000000000002")
DAVE = "dave@other-shop.test"  # the owner of Other Shop
DAVE_ID = uuid.UUID("00000000-0000-4000-8000-000000000005")
_NUMBERS = {DEMO_STORE: "1000000000000001", OTHER_SHOP: "1000000000000002"}


@dataclass(frozen=True)
class Conversation:
    id: uuid.UUID
    workspace_id: uuid.UUID
    contact_name: str
    wamids: tuple[str, ...]  # in message order


async def make_conversation(
    db: asyncpg.Pool, workspace_id: uuid.UUID, *, messages: int = 2
) -> Conversation:
    tag = uuid.uuid4().hex[:12]
    phone = str(570_000_000_000 + uuid.uuid4().int % 10**9)
    name = f"Customer {tag}"
    async with db.acquire() as conn, conn.transaction():
        contact_id = await conn.fetchval(
            "insert into public.contacts (workspace_id, name, phone) values ($1, $2, $3)"
            " returning id",
            workspace_id,
            name,
            phone,
        )
        conversation_id = await conn.fetchval(
            "insert into public.conversations (workspace_id, contact_id, phone, phone_number_id)"
            " values ($1, $2, $3, $4) returning id",
            workspace_id,
            contact_id,
            phone,
            _NUMBERS[workspace_id],
        )
        wamids = tuple(f"wamid.{tag}.{n}" for n in range(messages))
        for n, wamid in enumerate(wamids):
            await conn.execute(
                "insert into public.messages (workspace_id, conversation_id, direction, type,"
                " content, wamid, timestamp)"
                " values ($1, $2, 'inbound', 'text', $3::jsonb, $4,"
                " timestamptz '2026-01-01 10:00:00+00' + $5 * interval '1 minute')",
                workspace_id,
                conversation_id,
                f'{{"text": "message {n}"}}',
                wamid,
                n,
            )
    return Conversation(conversation_id, workspace_id, name, wamids)
