"""Rows a hostile tenant (or a provider, before the intake clamped its values) can leave in
`public.messages`: times Python cannot hold, contents that are not objects, megabyte texts. Each
poison is an inbound message of a conversation of its own, as the worker would find it."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass

import asyncpg

from tests.fixtures.worker import Workspace

MEGABYTE_TEXT = "a" * (1024 * 1024)


@dataclass(frozen=True)
class Poison:
    name: str
    timestamp: str = "now"  # a timestamptz literal, as Postgres reads it
    content: str = json.dumps({"body": "hola"})  # the jsonb text
    copies: int = 1  # inbound messages of this kind in the conversation


POISONS = [
    Poison("bc_date", timestamp="1200-02-15 14:13:21+00 BC"),
    Poison("first_bc_day", timestamp="0001-01-01 00:00:00+00 BC"),
    Poison("infinity", timestamp="infinity"),
    Poison("minus_infinity", timestamp="-infinity"),
    Poison("past_year_9999", timestamp="294276-01-01 00:00:00+00"),
    Poison("content_is_a_string", content=json.dumps("hola")),
    Poison("content_is_a_list", content=json.dumps([1, 2])),
    Poison("body_is_a_number", content=json.dumps({"body": 12})),
    Poison("megabyte_texts", content=json.dumps({"body": MEGABYTE_TEXT}), copies=5),
]


async def poisoned_conversation(db: asyncpg.Pool, ws: Workspace, poison: Poison) -> uuid.UUID:
    conv: uuid.UUID = await db.fetchval(
        "insert into public.conversations"
        " (workspace_id, channel_id, phone_number_id, phone, profile_name)"
        " select $1, ch.id, ch.phone_number_id, $3, 'Mala' from public.whatsapp_channels ch"
        " where ch.workspace_id = $1 and ch.phone_number_id = $2 returning id",
        ws.id,
        ws.phone_number_id,
        f"57{uuid.uuid4().int % 10**10:010d}",
    )
    assert conv is not None
    for _ in range(poison.copies):
        await db.execute(
            "insert into public.messages (workspace_id, conversation_id, wamid, direction, type,"
            " content, timestamp, processed_by_agent)"
            " values ($1, $2, $3, 'inbound', 'text', $4::jsonb, $5::text::timestamptz, false)",
            ws.id,
            conv,
            f"wamid.POISON{uuid.uuid4().hex}",
            poison.content,
            poison.timestamp,
        )
    return conv
