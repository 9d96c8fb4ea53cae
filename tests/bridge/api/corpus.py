"""The real webhook payloads of tests/data/ (see tests/data/SOURCES.md), and what storing each one
must produce, derived from the payload itself."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.factories import whatsapp as wa

DATA = Path(__file__).resolve().parents[2] / "data"

# Files kept byte for byte although their source has text after the one JSON document they hold.
TRAILING_TEXT = {"whatsapp-business-java-api/textMessageStatusRead.json": "{"}

# Keys of a message object the intake reads into columns rather than keeping under content.raw.
_COLUMN_KEYS = {"id", "from", "timestamp", "type"}


def bodies(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """The webhook bodies of one file: a file is one body, or an object of named bodies."""
    relative = path.relative_to(DATA).as_posix()
    text = path.read_text()
    start = len(text) - len(text.lstrip())
    value, end = json.JSONDecoder().raw_decode(text, start)
    assert text[end:].strip() == TRAILING_TEXT.get(relative, ""), f"{relative}: unexpected text"
    stem = relative.removesuffix(".json")
    if "object" in value:
        yield stem, value
    else:
        for name, body in value.items():
            yield f"{stem}:{name}", body


def samples() -> list[tuple[str, dict[str, Any]]]:
    return [item for path in sorted(DATA.rglob("*.json")) for item in bodies(path)]


@dataclass(frozen=True)
class Expected:
    """One message the intake must store, as the payload gives it."""

    wamid: str
    direction: str
    type: str
    message: dict[str, Any]
    phone: str | None
    bsuid: str | None


def _sender(message: dict[str, Any], contacts: list[dict[str, Any]]) -> tuple[Any, Any]:
    """Who the customer is once the message is stored: a number change moves them to the new
    number (`system.wa_id`, or `new_wa_id` in older payloads)."""
    phone, bsuid = message.get("from"), message.get("from_user_id")
    if phone is None and bsuid is None and len(contacts) == 1:
        phone, bsuid = contacts[0].get("wa_id"), contacts[0].get("user_id")
    elif bsuid is None:
        bsuid = next((c.get("user_id") for c in contacts if c.get("wa_id") == phone), None)
    system = message.get("system") or {}
    if system.get("type") == "user_changed_number":
        phone = system.get("wa_id") or system.get("new_wa_id") or phone
    return phone, bsuid


def message_statuses(body: dict[str, Any]) -> int:
    """How many delivery statuses of messages the body carries (a call's status is not one)."""
    return sum(
        1
        for entry in body["entry"]
        for change in entry.get("changes", [])
        if change.get("field") != "calls" and isinstance(change["value"], dict)
        for status in change["value"].get("statuses") or []
        if status.get("type") != "call"
    )


def retarget(body: dict[str, Any], pnid: str) -> tuple[dict[str, Any], list[Expected]]:
    """The body pointed at our channel, every message with a unique wamid, and the messages it
    carries: `messages[]` (inbound), `message_echoes[]` (outbound, sent from the Business app)
    and the messages of `history[].threads[]` (inbound when from the thread's customer)."""
    body = copy.deepcopy(body)
    expected: list[Expected] = []

    def add(msg: dict[str, Any], direction: str, phone: Any, bsuid: Any) -> None:
        msg["id"] = wa.wamid()
        kind = msg.get("type") or "unknown"
        expected.append(Expected(msg["id"], direction, kind, msg, phone, bsuid))

    for entry in body["entry"]:
        for change in entry.get("changes", []):
            value = change["value"]
            if not isinstance(value, dict):
                continue
            if "metadata" in value or "messages" in value or "message_echoes" in value:
                value.setdefault("metadata", {})["phone_number_id"] = pnid
            contacts = value.get("contacts") or []
            for msg in value.get("messages") or []:
                add(msg, "inbound", *_sender(msg, contacts))
            for echo in value.get("message_echoes") or []:
                add(echo, "outbound", echo.get("to"), echo.get("to_user_id"))
            for history in value.get("history") or []:
                for thread in history.get("threads") or []:
                    for msg in thread.get("messages") or []:
                        # A thread is one customer's (its id their wa_id); the rest the business sent.
                        customer = msg.get("from") == thread.get("id")
                        add(msg, "inbound" if customer else "outbound", thread.get("id"), None)
    return body, expected


def stored_raw(message: dict[str, Any]) -> dict[str, Any]:
    """What content.raw must hold: every key of the message but the ones read into columns."""
    return {k: v for k, v in message.items() if k not in _COLUMN_KEYS and v is not None}


def readable_preview(kind: str, message: dict[str, Any]) -> str | None:
    """Text the inbox preview must show, when the payload has one a placeholder would hide."""
    cards = message.get("contacts") if kind == "contacts" else None
    if isinstance(cards, list) and cards and isinstance(cards[0], dict):
        name = cards[0].get("name")
        formatted = name.get("formatted_name") if isinstance(name, dict) else None
        return formatted if isinstance(formatted, str) and formatted else None
    return None


def content_fields(kind: str, message: dict[str, Any]) -> dict[str, Any]:
    """The readable content keys the inbox shows for a message of this type, from the payload."""
    obj = message.get(kind)
    if kind == "contacts":
        return {"contacts": obj}
    if not isinstance(obj, dict):
        return {}
    if kind == "text":
        return {"body": obj.get("body", "")}
    if kind in ("image", "video", "audio", "document", "sticker"):
        return {"mediaId": obj.get("id"), "mimeType": obj.get("mime_type")}
    if kind == "button":
        return {"body": obj.get("text"), "payload": obj.get("payload")}
    if kind == "interactive":
        reply = obj.get(obj.get("type", ""), {})
        return {"interactiveType": obj.get("type"), "replyId": reply.get("id")}
    if kind == "location":
        return {"latitude": obj.get("latitude"), "longitude": obj.get("longitude")}
    if kind == "reaction":
        return {"message_id": obj.get("message_id"), "emoji": obj.get("emoji")}
    return {}
