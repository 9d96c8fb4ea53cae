"""The `messages.content` JSON for each WhatsApp message type.

Keys follow what the inbox frontend already reads (`body` for text and anything with a textual
meaning, `mediaId`/`mimeType`/`caption`/`filename` for media, ...). The whole type object is kept
under `raw`, so a type we do not know yet, or a field we do not map, is never lost.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

_MEDIA_TYPES = ("image", "video", "audio", "document", "sticker")

# Placeholder previews for types without text, as the inbox shows them.
PLACEHOLDERS = {
    "image": "[Imagen]",
    "video": "[Video]",
    "audio": "[Audio]",
    "document": "[Documento]",
    "sticker": "[Sticker]",
    "location": "[Ubicación]",
    "contacts": "[Contacto]",
    "reaction": "[Reacción]",
    "order": "[Pedido]",
    "unsupported": "[No soportado]",
}


def _media(obj: dict[str, Any]) -> dict[str, Any]:
    return {
        "body": obj.get("caption"),  # the inbox previews a caption like a text
        "mediaId": obj.get("id"),
        "mimeType": obj.get("mime_type"),
        "sha256": obj.get("sha256"),
        "caption": obj.get("caption"),
        "filename": obj.get("filename"),
        "url": obj.get("url"),
        "voice": obj.get("voice"),
        "animated": obj.get("animated"),
    }


def _interactive(obj: dict[str, Any]) -> dict[str, Any]:
    kind = obj.get("type")
    reply = obj.get(kind) if isinstance(kind, str) else None
    reply = reply if isinstance(reply, dict) else {}
    body = reply.get("title") or reply.get("body") or reply.get("name")
    return {
        "interactiveType": kind,
        "replyId": reply.get("id"),
        "body": body if isinstance(body, str) else "[Interactive]",
        "description": reply.get("description"),
        "responseJson": reply.get("response_json"),
    }


def _card_line(card: Any) -> str | None:
    """`Name (phone)` of one shared contact card, or what of it there is."""
    if not isinstance(card, dict):
        return None
    name = card.get("name")
    name = name if isinstance(name, dict) else {}
    full = name.get("formatted_name") or " ".join(
        str(name[k]) for k in ("first_name", "middle_name", "last_name") if name.get(k)
    )
    phones = card.get("phones")
    first = phones[0] if isinstance(phones, list) and phones else None
    phone = (first.get("phone") or first.get("wa_id")) if isinstance(first, dict) else None
    parts = [str(full).strip() if full else "", f"({phone})" if phone else ""]
    line = " ".join(p for p in parts if p)
    return line or None


def contacts_preview(cards: list[Any]) -> str:
    """The readable text of a `contacts` message: each card's name and first phone."""
    lines = [line for line in map(_card_line, cards) if line]
    placeholder = PLACEHOLDERS["contacts"]
    return f"{placeholder} {'; '.join(lines)}" if lines else placeholder


def _location(obj: dict[str, Any]) -> dict[str, Any]:
    return {k: obj.get(k) for k in ("latitude", "longitude", "name", "address", "url")}


_BUILDERS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "text": lambda obj: {"body": obj.get("body", "")},
    "button": lambda obj: {"body": obj.get("text"), "payload": obj.get("payload")},
    "interactive": _interactive,
    "location": _location,
    "reaction": lambda obj: {"message_id": obj.get("message_id"), "emoji": obj.get("emoji")},
    "order": lambda obj: {"body": obj.get("text") or None, "catalogId": obj.get("catalog_id")},
    "system": lambda obj: {"body": obj.get("body"), "systemType": obj.get("type")},
    "revoke": lambda obj: {"originalMessageId": obj.get("original_message_id")},
    "edit": lambda obj: {"originalMessageId": obj.get("original_message_id")},
    **{t: _media for t in _MEDIA_TYPES},
}


def content_for(message_type: str, raw_message: dict[str, Any]) -> dict[str, Any]:
    """Build the stored content of one message from its raw webhook object."""
    type_obj = raw_message.get(message_type)
    if message_type == "contacts" and isinstance(type_obj, list):
        return {
            "body": contacts_preview(type_obj),
            "contacts": type_obj,
            "raw": {"contacts": type_obj},
        }
    obj = type_obj if isinstance(type_obj, dict) else {}
    builder = _BUILDERS.get(message_type)
    content = builder(obj) if builder else {}
    content = {k: v for k, v in content.items() if v is not None}
    if "body" not in content:
        content["body"] = PLACEHOLDERS.get(message_type, f"[{message_type}]")
    if message_type == "edit" and isinstance(obj.get("message"), dict):
        inner = obj["message"]
        inner_type = inner.get("type")
        if isinstance(inner_type, str) and inner_type != "edit":
            content["edited"] = content_for(inner_type, inner)
    extras = {
        k: v
        for k, v in raw_message.items()
        if k not in {"id", "from", "timestamp", "type", message_type}
    }
    content["raw"] = {message_type: type_obj, **extras} if type_obj is not None else extras
    return content
