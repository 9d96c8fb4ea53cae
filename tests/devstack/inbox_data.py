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
    name = f"Customer {tag}"
    conversation_id, _ = await open_conversation(db, workspace_id, _NUMBERS[workspace_id], name)
    async with db.acquire() as conn, conn.transaction():
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


async def give_password(db: asyncpg.Pool, user_id: uuid.UUID, full_name: str) -> str:
    """Let a user made by `devstack.workspaces` sign in as the seed's members do: Auth's instance,
    a confirmed email, the demo password (the seed's bcrypt hash) and a name in the user's
    metadata. Returns the email."""
    email: str = await db.fetchval(
        "update auth.users set instance_id = '00000000-0000-0000-0000-000000000000',"
        " email_confirmed_at = now(), encrypted_password ="
        " (select encrypted_password from auth.users where id = $2),"
        " confirmation_token = '', recovery_token = '', email_change_token_new = '',"
        " email_change = '', email_change_token_current = '', phone_change = '',"
        " phone_change_token = '', reauthentication_token = '',"
        ' raw_app_meta_data = \'{"provider": "email", "providers": ["email"]}\','
        " raw_user_meta_data = jsonb_build_object('full_name', $3::text)"
        " where id = $1 returning email",
        user_id,
        ANA_ID,
        full_name,
    )
    return email


async def open_conversation(
    db: asyncpg.Pool, workspace_id: uuid.UUID, phone_number_id: str, name: str
) -> tuple[uuid.UUID, str]:
    """A customer's contact and conversation on a workspace's number; returns (id, phone)."""
    phone = str(570_000_000_000 + uuid.uuid4().int % 10**9)
    async with db.acquire() as conn, conn.transaction():
        contact_id = await conn.fetchval(
            "insert into public.contacts (workspace_id, name, phone) values ($1, $2, $3)"
            " returning id",
            workspace_id,
            name,
            phone,
        )
        conversation_id: uuid.UUID = await conn.fetchval(
            "insert into public.conversations (workspace_id, contact_id, phone, phone_number_id)"
            " values ($1, $2, $3, $4) returning id",
            workspace_id,
            contact_id,
            phone,
            phone_number_id,
        )
    return conversation_id, phone


async def customer_writes(db: asyncpg.Pool, conversation_id: uuid.UUID, body: str) -> uuid.UUID:
    """A customer's text as the intake stores it: the row (unprocessed, for the agent) and the
    conversation's last message, unread count and customer-service window."""
    async with db.acquire() as conn, conn.transaction():
        message_id: uuid.UUID = await conn.fetchval(
            "insert into public.messages (workspace_id, conversation_id, wamid, direction, type,"
            " content, processed_by_agent)"
            " select workspace_id, id, $2, 'inbound', 'text', jsonb_build_object('body', $3::text),"
            " false from public.conversations where id = $1 returning id",
            conversation_id,
            f"wamid.{uuid.uuid4().hex}",
            body,
        )
        await conn.execute(
            "update public.conversations set last_message_at = now(),"
            " last_customer_message_at = now(), last_message_preview = left($2, 100),"
            " unread_count = unread_count + 1, is_read = false where id = $1",
            conversation_id,
            body,
        )
    return message_id


async def bot_replied(
    db: asyncpg.Pool, conversation_id: uuid.UUID, body: str, status: str = "delivered"
) -> uuid.UUID:
    """A reply of the agent as its outbox leaves it once WhatsApp took it (`sent_by_agent`)."""
    async with db.acquire() as conn, conn.transaction():
        message_id: uuid.UUID = await conn.fetchval(
            "insert into public.messages (workspace_id, conversation_id, wamid, direction, type,"
            " content, status, sent_by_agent, outbox_kind, outbox_position)"
            " select workspace_id, id, $2, 'outbound', 'text', jsonb_build_object('body', $3::text),"
            " $4, true, 'reply', 0 from public.conversations where id = $1 returning id",
            conversation_id,
            f"wamid.{uuid.uuid4().hex}",
            body,
            status,
        )
        await conn.execute(
            "update public.conversations set last_message_at = now(),"
            " last_message_preview = left($2, 100) where id = $1",
            conversation_id,
            body,
        )
    return message_id
