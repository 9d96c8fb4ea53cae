"""Every real webhook payload of tests/data/ (see tests/data/SOURCES.md), as other WhatsApp
libraries wrote them for their own tests, goes through the signed webhook: it is accepted, its
raw event kept, and every message it carries stored once with the type, direction, sender and
content the payload gives."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import pytest

from tests.bridge.api.corpus import (
    DATA,
    content_fields,
    message_statuses,
    readable_preview,
    retarget,
    samples,
    stored_raw,
)
from tests.factories import whatsapp as wa
from tests.fixtures.webhook import Channel, WebhookClient

SAMPLES = dict(samples())

# Payloads per folder, as SOURCES.md lists them; fewer would leave payloads untested.
PAYLOADS = {
    "netflie-whatsapp-cloud-api": 30,
    "piusalfred-whatsapp": 23,
    "pywa-updates": 30,
    "pywa-webhooks": 44,
    "whatsapp-business-java-api": 25,
}

# Payloads today's intake refuses or misreads: the cause, and what should happen instead.
# Payloads today's intake misreads, with why (each an expected failure until fixed).
KNOWN_GAPS: dict[str, str] = {}


def _changes_number(body: dict[str, Any]) -> bool:
    return any(
        msg.get("system", {}).get("type") == "user_changed_number"
        for entry in body["entry"]
        for change in entry.get("changes", [])
        for msg in change["value"].get("messages") or []
    )


# `system` messages telling that a customer now writes from another number.
NUMBER_CHANGES = [name for name, body in SAMPLES.items() if _changes_number(body)]


def _cases() -> list[Any]:
    return [
        pytest.param(name, marks=pytest.mark.xfail(strict=True, reason=KNOWN_GAPS[name]))
        if name in KNOWN_GAPS
        else name
        for name in SAMPLES
    ]


def test_corpus_has_every_documented_payload() -> None:
    # Without the folder the test below is parametrized with nothing and only skipped; this fails.
    assert DATA.is_dir(), f"corpus not found at {DATA}"
    found: dict[str, int] = {}
    for name in SAMPLES:
        folder = name.split("/", 1)[0]
        found[folder] = found.get(folder, 0) + 1
    assert found == PAYLOADS
    assert len(SAMPLES) == len(samples())  # one test per payload: no two share a name
    assert set(KNOWN_GAPS) <= set(SAMPLES)
    assert len(NUMBER_CHANGES) == 3


def test_every_corpus_folder_keeps_its_licence_and_source() -> None:
    sources = (DATA / "SOURCES.md").read_text()
    for folder in PAYLOADS:
        assert any((DATA / folder / n).is_file() for n in ("LICENSE", "LICENCE")), folder
        assert f"## {folder}/" in sources, folder


@pytest.mark.parametrize("name", _cases())
async def test_corpus_payload_is_accepted_and_stored(
    webhook: WebhookClient,
    make_channel: Callable[..., Awaitable[Channel]],
    db: asyncpg.Pool,
    name: str,
) -> None:
    channel = await make_channel()
    body, expected = retarget(SAMPLES[name], channel.phone_number_id)
    response = await webhook.post(body)
    assert response.status_code == 200, response.text

    event = await db.fetchrow(
        "select status, payload from public.whatsapp_webhook_events where id = $1",
        response.json()["event_id"],
    )
    assert event is not None
    assert event["status"] == "processed"
    assert json.loads(event["payload"]) == body

    rows = await db.fetch(
        "select m.wamid, m.direction, m.type, m.content, c.phone, c.bsuid"
        " from public.messages m join public.conversations c on c.id = m.conversation_id"
        " where m.workspace_id = $1",
        channel.workspace_id,
    )
    stored = {row["wamid"]: row for row in rows}
    # Every message once, and nothing else: a status or an account update stores no message.
    assert len(rows) == len(stored) == len(expected)
    for want in expected:
        row = stored[want.wamid]
        assert (row["direction"], row["type"]) == (want.direction, want.type), want.wamid
        assert (row["phone"], row["bsuid"]) == (want.phone, want.bsuid), want.wamid
        content = json.loads(row["content"])
        raw = {k: v for k, v in content["raw"].items() if k != "timestamp"}
        assert raw == stored_raw(want.message), want.wamid
        for key, value in content_fields(want.type, want.message).items():
            assert content.get(key) == value, (want.wamid, key)
        assert isinstance(content.get("body"), str), want.wamid
        assert content["body"], want.wamid
        preview = readable_preview(want.type, want.message)
        if preview is not None:
            assert preview in content["body"], want.wamid

    # The statuses name messages this workspace never sent: each waits as an orphan.
    orphans = await db.fetchval(
        "select count(*) from public.message_status_orphans where channel_id = $1",
        channel.channel_id,
    )
    assert orphans == message_statuses(body)

    # The provider delivers a body again when unsure it was received: nothing is stored twice.
    again = await webhook.post(body)
    assert again.status_code == 200, again.text
    assert await db.fetchval(
        "select count(*) from public.messages where workspace_id = $1", channel.workspace_id
    ) == len(expected)


@pytest.mark.parametrize("name", NUMBER_CHANGES)
async def test_corpus_number_change_keeps_the_customer(
    webhook: WebhookClient,
    make_channel: Callable[..., Awaitable[Channel]],
    db: asyncpg.Pool,
    name: str,
) -> None:
    channel = await make_channel()
    body, expected = retarget(SAMPLES[name], channel.phone_number_id)
    assert (await webhook.post(body)).status_code == 200
    (notice,) = expected
    system = notice.message["system"]
    follow_up = wa.text("sigo aquí", sender=system.get("wa_id") or system["new_wa_id"])
    response = await webhook.post(wa.body(wa.change(channel.phone_number_id, messages=[follow_up])))
    assert response.status_code == 200, response.text
    conversations = await db.fetch(
        "select distinct conversation_id from public.messages"
        " where workspace_id = $1 and wamid = any($2)",
        channel.workspace_id,
        [notice.wamid, follow_up["id"]],
    )
    assert len(conversations) == 1
