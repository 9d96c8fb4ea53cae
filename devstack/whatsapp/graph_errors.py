"""Graph API error responses as the WhatsApp Cloud API sends them.

Body: `{"error": {"message": "(#<code>) <title>", "type": "OAuthException", "code": <code>,
"error_data": {"messaging_product": "whatsapp", "details": "…"}, "fbtrace_id": "…"}}`. Meta answers
most errors, throttling included, with HTTP 400 and tells them apart by `code`; expired or missing
tokens are 401, and its own failures 500/503.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class GraphErrorKind:
    code: int
    title: str
    details: str
    http_status: int = 400


KNOWN: dict[int, GraphErrorKind] = {
    kind.code: kind
    for kind in (
        GraphErrorKind(
            4, "Application request limit reached", "The app has reached its API call rate limit."
        ),
        GraphErrorKind(
            80007, "Rate limit issues", "The WhatsApp Business Account has reached its rate limit."
        ),
        GraphErrorKind(
            100, "Invalid parameter", "A parameter is missing, misspelled or has the wrong type."
        ),
        GraphErrorKind(130429, "Rate limit hit", "Cloud API message throughput has been reached."),
        GraphErrorKind(
            131000, "Something went wrong", "Message failed to send due to an unknown error.", 500
        ),
        GraphErrorKind(131016, "Service unavailable", "A service is temporarily unavailable.", 503),
        GraphErrorKind(131026, "Message undeliverable", "Unable to deliver message."),
        GraphErrorKind(
            131047,
            "Re-engagement message",
            "Message failed to send because more than 24 hours have passed since the customer "
            "last replied to this number.",
        ),
        GraphErrorKind(
            131048,
            "Spam rate limit hit",
            "Message failed to send because there are restrictions on how many messages can be "
            "sent from this phone number.",
        ),
        GraphErrorKind(
            131056,
            "(Business Account, Consumer Account) pair rate limit hit",
            "Message failed to send because there were too many messages sent from this phone "
            "number to the same phone number in a short period of time.",
        ),
        GraphErrorKind(190, "Invalid OAuth access token - Cannot parse access token", "", 401),
    )
}


def fbtrace_id() -> str:
    # Graph's trace ids are short opaque alphanumerics, e.g. "AbC1dEfGhIjK_lMn0pQrStU".
    return secrets.token_urlsafe(16)


def kind_for(code: int) -> GraphErrorKind:
    return KNOWN.get(code, GraphErrorKind(code, "Error", "The request failed."))


def body(code: int, *, details: str | None = None, title: str | None = None) -> dict[str, Any]:
    kind = kind_for(code)
    error: dict[str, Any] = {
        "message": f"(#{code}) {title or kind.title}",
        "type": "OAuthException",
        "code": code,
    }
    if code == 190:
        # Token errors name no parameter and carry no WhatsApp details.
        error["message"] = title or kind.title
    elif code == 4:
        # The Graph-wide app throttle looks like every Graph API throttle, not like a Cloud API
        # error: transient flag, no error_data.
        error["is_transient"] = True
    else:
        error["error_data"] = {"messaging_product": "whatsapp", "details": details or kind.details}
    error["fbtrace_id"] = fbtrace_id()
    return {"error": error}


def invalid_parameter(details: str) -> tuple[int, dict[str, Any]]:
    return 400, body(100, details=details)


def invalid_token() -> tuple[int, dict[str, Any]]:
    return 401, body(190)
