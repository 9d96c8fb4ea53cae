"""What `Webhook.normalise` reads from the shapes that act differently from a new customer
message: history threads (direction from the business number), group messages (group_id) and
messages acting on another one (reaction, edit, revoke: the target's wamid)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bridge.api.payloads import Webhook
from tests.bridge.api.corpus import DATA

PNID = "106540352242922"
BUSINESS = "15550783881"


def _sample(name: str, key: str) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(Path(DATA / "pywa-webhooks" / name).read_text())[key]
    return body


def _history(messages: list[dict[str, Any]], thread: str = "16505551234") -> dict[str, Any]:
    # Meta's history webhook reference: value.history[].threads[].messages[].
    return {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "WABA",
                "changes": [
                    {
                        "field": "history",
                        "value": {
                            "messaging_product": "whatsapp",
                            "metadata": {"display_phone_number": BUSINESS, "phone_number_id": PNID},
                            "history": [
                                {
                                    "metadata": {"phase": 0, "chunk_order": 1, "progress": 100},
                                    "threads": [{"id": thread, "messages": messages}],
                                }
                            ],
                        },
                    }
                ],
            }
        ],
    }


def _text(sender: str, wamid: str, **extra: Any) -> dict[str, Any]:
    return {
        "from": sender,
        "id": wamid,
        "timestamp": "1739230955",
        "type": "text",
        "text": {"body": wamid},
        **extra,
    }


def test_history_threads_keep_each_message_direction() -> None:
    body = _history(
        [
            _text("16505551234", "w1", history_context={"status": "READ"}),
            _text(BUSINESS, "w2", history_context={"status": "DELIVERED"}),  # no `to`
            _text(BUSINESS, "w3", to="16505551234", history_context={"status": "PLAYED"}),
        ]
    )
    rows = Webhook.model_validate(body).normalise().messages
    assert [(r["wamid"], r["direction"], r["phone"]) for r in rows] == [
        ("w1", "inbound", "16505551234"),
        ("w2", "outbound", "16505551234"),
        ("w3", "outbound", "16505551234"),
    ]
    assert all(r["history"] for r in rows)
    assert [r["status"] for r in rows] == ["read", "delivered", "played"]
    assert rows[0]["content"]["raw"]["history_context"] == {"status": "READ"}


def test_a_history_without_metadata_is_refused() -> None:
    body = _history([_text("16505551234", "w1")])
    del body["entry"][0]["changes"][0]["value"]["metadata"]
    with pytest.raises(ValueError, match="phone_number_id"):
        Webhook.model_validate(body).normalise()


def test_live_messages_are_not_history_and_carry_their_group() -> None:
    body = _sample("message.json", "text")
    body["entry"][0]["changes"][0]["value"]["messages"][0]["group_id"] = "120363@g.us"
    [row] = Webhook.model_validate(body).normalise().messages
    assert (row["history"], row["group_id"], row["target_wamid"]) == (False, "120363@g.us", None)


def test_reactions_edits_and_revokes_name_their_target() -> None:
    cases = [
        (_sample("message.json", "reaction"), "wamid.yzxyzx="),
        (
            _sample("edited_message.json", "image"),
            "wamid.HBgLMTQxMjU1NTA4MjkVAgASGBQzQUNCNjk5RDUwNUZGMUZEM0VBRAA=",
        ),
        (_sample("deleted_message.json", "revoke"), "<ORIGINAL_WHATSAPP_MESSAGE_ID>"),
    ]
    for body, target in cases:
        [row] = Webhook.model_validate(body).normalise().messages
        assert row["target_wamid"] == target, row["type"]
