"""A shared contact card (`contacts` message) is readable in the inbox and by the engine: its
content body names each card and its first phone, where it used to be a bare placeholder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import asyncpg

from bridge.api.message_content import content_for
from tests.bridge.api.corpus import DATA, retarget
from tests.factories import whatsapp as wa
from tests.fixtures.webhook import MakeChannel, WebhookClient


def _pywa_contacts_body() -> dict[str, Any]:
    samples = json.loads(Path(DATA / "pywa-webhooks" / "message.json").read_text())
    body: dict[str, Any] = samples["contacts"]
    return body


async def test_a_contact_card_is_previewed_with_names_and_phones(
    webhook: WebhookClient, make_channel: MakeChannel, db: asyncpg.Pool
) -> None:
    channel = await make_channel()
    body, [expected] = retarget(_pywa_contacts_body(), channel.phone_number_id)

    response = await webhook.post(body)
    assert response.status_code == 200, response.text

    row = await db.fetchrow(
        "select m.content, c.last_message_preview from public.messages m"
        " join public.conversations c on c.id = m.conversation_id where m.wamid = $1",
        expected.wamid,
    )
    assert row is not None
    content = json.loads(row["content"])
    assert content["body"].startswith(
        "[Contacto] Chandler Bing (+1 555-555-5555); Monica (+1 666-666-6666); Rachel Green"
    )
    assert content["contacts"] == expected.message["contacts"]  # the cards themselves are kept
    assert row["last_message_preview"] == content["body"][:100]


def test_a_card_without_a_formatted_name_or_phone_still_reads() -> None:
    cards = [
        {"name": {"first_name": "Ana", "last_name": "Pérez"}},
        {"phones": [{"wa_id": "573001112233"}]},
    ]
    content = content_for("contacts", {"type": "contacts", "contacts": cards})
    assert content["body"] == "[Contacto] Ana Pérez; (573001112233)"


def test_cards_with_nothing_readable_keep_the_placeholder() -> None:
    unreadable: list[list[Any]] = [[], ["not a card"], [{"name": "x", "phones": "y"}], [{}]]
    for cards in unreadable:
        content = content_for("contacts", {"type": "contacts", "contacts": cards})
        assert content["body"] == "[Contacto]"
        assert content["contacts"] == cards


def test_every_type_example_card_reads() -> None:
    [(kind, cards)] = [(k, o) for k, o in wa.EVERY_TYPE if k == "contacts"]
    content = content_for(kind, {"type": kind, kind: cards})
    assert content["body"] == "[Contacto] Ana Pérez (+57 300 000 0000)"
