"""What a client may POST to `/<phone_number_id>/messages`: a message, a read receipt, or a read
receipt with a typing indicator. Anything else is a Graph error 100 naming the bad parameter."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

# Message types the Cloud API accepts; each carries an object under the key named by its type.
MESSAGE_TYPES = frozenset(
    {
        "text", "image", "audio", "video", "document", "sticker", "location", "contacts",
        "interactive", "template", "reaction",
    }
)  # fmt: skip
MAX_TEXT_BODY = 4096


class InvalidRequest(Exception):
    """The body breaks the Cloud API's rules; `details` says which parameter."""

    def __init__(self, details: str) -> None:
        super().__init__(details)
        self.details = details


@dataclass(frozen=True)
class Send:
    to: str
    type: str
    text: str | None  # the text body of a text message


@dataclass(frozen=True)
class ReadReceipt:
    message_id: str
    typing: bool  # with `typing_indicator: {"type": "text"}`


def parse(raw: bytes) -> tuple[dict[str, Any], Send | ReadReceipt]:
    """The JSON body and what it asks for; raises InvalidRequest."""
    try:
        body = json.loads(raw)
    except ValueError:
        raise InvalidRequest("The request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    if body.get("messaging_product") != "whatsapp":
        raise InvalidRequest("Param messaging_product is required and must be 'whatsapp'.")
    if "status" in body:
        return body, _read_receipt(body)
    return body, _send(body)


def _read_receipt(body: dict[str, Any]) -> ReadReceipt:
    if body["status"] != "read":
        raise InvalidRequest("Param status must be 'read'.")
    message_id = body.get("message_id")
    if not isinstance(message_id, str) or not message_id:
        raise InvalidRequest("Param message_id is required and must be a string.")
    indicator = body.get("typing_indicator")
    if indicator is None:
        return ReadReceipt(message_id, typing=False)
    if not isinstance(indicator, dict) or indicator.get("type") != "text":
        raise InvalidRequest("Param typing_indicator[type] must be 'text'.")
    return ReadReceipt(message_id, typing=True)


def _send(body: dict[str, Any]) -> Send:
    recipient_type = body.get("recipient_type", "individual")
    if recipient_type not in ("individual", "group"):
        raise InvalidRequest("Param recipient_type must be one of {individual, group}.")
    to = body.get("to")
    if not isinstance(to, str) or not to.strip():
        raise InvalidRequest("Param to is required and must be a non-empty string.")
    kind = body.get("type", "text")
    if kind not in MESSAGE_TYPES:
        raise InvalidRequest(
            "Param type must be one of {" + ", ".join(sorted(MESSAGE_TYPES)) + "}."
        )
    content = body.get(kind)
    if not isinstance(content, dict):
        raise InvalidRequest(f"Param {kind} is required and must be an object.")
    context = body.get("context")
    if context is not None and not (
        isinstance(context, dict) and isinstance(context.get("message_id"), str)
    ):
        raise InvalidRequest("Param context[message_id] must be a string.")
    if kind == "template":
        _template(content)
    if kind != "text":
        return Send(to=to, type=kind, text=None)
    text = content.get("body")
    if not isinstance(text, str) or not text:
        raise InvalidRequest("Param text[body] is required and must be a non-empty string.")
    if len(text) > MAX_TEXT_BODY:
        raise InvalidRequest(f"Param text[body] must be at most {MAX_TEXT_BODY} characters long.")
    if "preview_url" in content and not isinstance(content["preview_url"], bool):
        raise InvalidRequest("Param text[preview_url] must be a boolean.")
    return Send(to=to, type="text", text=text)


def _template(template: dict[str, Any]) -> None:
    """`template`: `name` and `language.code` required; `components`, when given, a list of
    objects each naming its `type` (header, body, button, ...)."""
    name = template.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidRequest("Param template[name] is required and must be a non-empty string.")
    language = template.get("language")
    if not isinstance(language, dict):
        raise InvalidRequest("Param template[language] is required and must be an object.")
    code = language.get("code")
    if not isinstance(code, str) or not code:
        raise InvalidRequest("Param template[language][code] is required and must be a string.")
    components = template.get("components", [])
    if not isinstance(components, list):
        raise InvalidRequest("Param template[components] must be an array.")
    for index, component in enumerate(components):
        if not isinstance(component, dict) or not isinstance(component.get("type"), str):
            raise InvalidRequest(
                f"Param template[components][{index}][type] is required and must be a string."
            )
