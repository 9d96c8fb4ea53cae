"""Every real webhook payload of the corpus in tests/data/pywa-webhooks/ (see
tests/data/SOURCES.md) is accepted and every message stored."""

from __future__ import annotations

import copy
import json
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.factories import whatsapp as wa
from tests.fixtures.webhook import Channel, WebhookClient

CORPUS = Path(__file__).resolve().parents[2] / "data" / "pywa-webhooks"
# As pywa-webhooks/README.md documents them; fewer would leave payloads untested.
PAYLOADS = 44


def _samples() -> Iterator[tuple[str, dict[str, Any]]]:
    for path in sorted(CORPUS.glob("*.json")):
        for name, body in json.loads(path.read_text()).items():
            yield f"{path.stem}:{name}", body


SAMPLES = list(_samples())


def _retarget(body: dict[str, Any], pnid: str) -> tuple[dict[str, Any], list[str]]:
    """Point the sample at our channel and give every message a unique wamid."""
    body = copy.deepcopy(body)
    wamids: list[str] = []
    for entry in body["entry"]:
        for change in entry["changes"]:
            value = change["value"]
            value.setdefault("metadata", {})["phone_number_id"] = pnid
            for key in ("messages", "message_echoes"):
                for msg in value.get(key, []):
                    msg["id"] = wa.wamid()
                    wamids.append(msg["id"])
    return body, wamids


async def test_corpus_has_the_documented_44_payloads() -> None:
    # Without the folder the test below is parametrized with nothing and only skipped; this fails.
    assert CORPUS.is_dir(), f"corpus not found at {CORPUS}"
    assert len(SAMPLES) == PAYLOADS
    assert len(dict(SAMPLES)) == PAYLOADS  # one test per payload: no two share a name


@pytest.mark.parametrize("name", [n for n, _ in SAMPLES])
async def test_corpus_payload_is_accepted_and_stored(
    webhook: WebhookClient,
    make_channel: Callable[..., Awaitable[Channel]],
    db: asyncpg.Pool,
    name: str,
) -> None:
    channel = await make_channel()
    body, wamids = _retarget(dict(SAMPLES)[name], channel.phone_number_id)
    response = await webhook.post(body)
    assert response.status_code == 200, response.text
    stored = await db.fetchval(
        "select count(*) from public.messages where wamid = any($1) and workspace_id = $2",
        wamids,
        channel.workspace_id,
    )
    assert stored == len(wamids)
    event = await db.fetchrow(
        "select status, payload from public.whatsapp_webhook_events where id = $1",
        response.json()["event_id"],
    )
    assert event is not None
    assert event["status"] == "processed"
    assert json.loads(event["payload"]) == body
