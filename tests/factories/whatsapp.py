"""Webhook bodies as the WhatsApp Cloud API posts them (Meta's reference shapes)."""

from __future__ import annotations

import itertools
import time
import uuid
from typing import Any

_seq = itertools.count(1)


def wamid() -> str:
    return f"wamid.TEST{uuid.uuid4().hex.upper()}"


def customer_phone() -> str:
    return f"57300{next(_seq):03d}{uuid.uuid4().int % 10**4:04d}"


def text(body: str, *, sender: str, id: str | None = None, ts: int | None = None) -> dict[str, Any]:
    return {
        "from": sender,
        "id": id or wamid(),
        "timestamp": str(ts or int(time.time())),
        "type": "text",
        "text": {"body": body},
    }


def status(
    of_wamid: str, state: str, *, recipient: str, ts: int | None = None, error: int | None = None
) -> dict[str, Any]:
    st: dict[str, Any] = {
        "id": of_wamid,
        "status": state,
        "timestamp": str(ts or int(time.time())),
        "recipient_id": recipient,
    }
    if state == "sent":
        st["pricing"] = {"billable": True, "pricing_model": "PMP", "category": "service"}
    if error is not None:
        st["errors"] = [
            {
                "code": error,
                "title": "Message undeliverable",
                "message": "Message undeliverable",
                "error_data": {"details": "Message Undeliverable."},
            }
        ]
    return st


def change(
    phone_number_id: str,
    *,
    messages: list[dict[str, Any]] | None = None,
    statuses: list[dict[str, Any]] | None = None,
    contacts: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    value: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550001111", "phone_number_id": phone_number_id},
    }
    if contacts is not None:
        value["contacts"] = contacts
    elif messages:
        senders = {str(m["from"]) for m in messages if m.get("from")}
        value["contacts"] = [
            {"profile": {"name": f"Cliente {s[-4:]}"}, "wa_id": s} for s in sorted(senders)
        ]
    if messages is not None:
        value["messages"] = messages
    if statuses is not None:
        value["statuses"] = statuses
    return {"field": "messages", "value": value}


def body(*changes: dict[str, Any], entries: int = 1) -> dict[str, Any]:
    """A webhook body; with entries > 1 the changes are spread over that many entries."""
    buckets: list[list[dict[str, Any]]] = [[] for _ in range(entries)]
    for i, ch in enumerate(changes):
        buckets[i % entries].append(ch)
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": f"WABA{i}", "changes": b} for i, b in enumerate(buckets)],
    }


# One example of every inbound message type, as (type, type object).
EVERY_TYPE: list[tuple[str, Any]] = [
    ("text", {"body": "¿cuánto cuesta? 🤔"}),
    ("image", {"id": "111", "mime_type": "image/jpeg", "sha256": "abc=", "caption": "mira"}),
    ("audio", {"id": "112", "mime_type": "audio/ogg; codecs=opus", "sha256": "x=", "voice": True}),
    ("video", {"id": "113", "mime_type": "video/mp4", "sha256": "y="}),
    (
        "document",
        {
            "id": "114",
            "mime_type": "application/pdf",
            "sha256": "z=",
            "filename": "factura.pdf",
            "caption": "la factura",
        },
    ),
    ("sticker", {"id": "115", "mime_type": "image/webp", "sha256": "s=", "animated": False}),
    ("location", {"latitude": 4.65, "longitude": -74.05, "name": "Oficina", "address": "Cra 7"}),
    (
        "contacts",
        [
            {
                "name": {"formatted_name": "Ana Pérez", "first_name": "Ana"},
                "phones": [{"phone": "+57 300 000 0000", "type": "CELL"}],
            }
        ],
    ),
    ("interactive", {"type": "button_reply", "button_reply": {"id": "buy", "title": "Comprar"}}),
    (
        "interactive",
        {
            "type": "list_reply",
            "list_reply": {"id": "2x", "title": "Pack 2x", "description": "dos"},
        },
    ),
    ("button", {"payload": "SI", "text": "Sí, quiero"}),
    ("reaction", {"message_id": "wamid.OTHER", "emoji": "👍"}),
    ("unsupported", None),
    ("order", {"catalog_id": "1", "text": "", "product_items": []}),
    ("hologram", {"frames": 3}),  # a type that does not exist yet
]


def typed_message(kind: str, obj: Any, *, sender: str) -> dict[str, Any]:
    msg: dict[str, Any] = {
        "from": sender,
        "id": wamid(),
        "timestamp": str(int(time.time())),
        "type": kind,
    }
    if obj is not None:
        msg[kind] = obj
    if kind == "unsupported":
        msg["errors"] = [{"code": 131051, "title": "Message type unknown"}]
    return msg
