"""The port between an agent turn and a conversational engine.

A turn hands the engine everything it may look at (workspace, conversation, contact, the session's
mode and state, and the new inbound messages of the turn: a burst is one input) and gets back
everything the turn will do: ordered replies with their delays, the session's next mode and state,
the detected intent with a confidence, tokens used, and whether to hand off to a human. The engine
sends nothing and writes nothing: the turn persists the outcome (outbox first) and the sender sends.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

# WhatsApp types whose content is text the customer wrote or picked (a button's or a list row's
# title); other types carry text only as a caption.
TEXT_TYPES = frozenset({"text", "interactive", "button"})


@dataclass(frozen=True)
class InboundMessage:
    message_id: uuid.UUID
    wamid: str | None
    type: str  # WhatsApp's message type: text, image, audio, interactive, button, ...
    text: str | None  # the text a person would read (text body, button title, caption), if any
    content: dict[str, Any]
    timestamp: datetime


def readable_text(message_type: str, content: Mapping[str, Any]) -> str | None:
    """The text a person would read in a stored message's content: a text type's body or a
    caption; None for a placeholder preview such as "[Imagen]"."""
    body = content.get("body")
    if not isinstance(body, str):
        return None
    if message_type in TEXT_TYPES or not body.startswith("["):
        return body
    return None


@dataclass(frozen=True)
class Contact:
    id: uuid.UUID
    name: str
    phone: str | None


@dataclass(frozen=True)
class Session:
    id: uuid.UUID
    agent_id: str
    mode: str
    state: dict[str, Any]  # engine-owned JSON (captured data, templates sent, intents seen, ...)
    version: int
    is_new: bool  # created for this turn (first contact, or after a closed/handed-off session)


@dataclass(frozen=True)
class TurnInput:
    workspace_id: uuid.UUID
    conversation_id: uuid.UUID
    contact: Contact | None  # None in a group's conversation: no one customer
    session: Session
    messages: list[InboundMessage]  # oldest first; never empty
    settings: dict[str, Any] = field(default_factory=dict)  # workspace_agent_config row


@dataclass(frozen=True)
class Reply:
    text: str
    delay_ms: int = 0  # before this message, at response_speed 1.0; the sender scales it
    template_id: str | None = None


@dataclass(frozen=True)
class TurnResult:
    replies: list[Reply]
    mode: str
    state: dict[str, Any]
    intent: str | None = None
    confidence: float | None = None  # 0..100
    tokens_used: int = 0
    handoff: bool = False
    handoff_reason: str | None = None


class Engine(Protocol):
    """A conversational agent. `decide` must not send, write or keep per-conversation memory
    outside the returned state: a turn may be re-run after a crash and must decide the same."""

    agent_id: str

    async def decide(self, turn: TurnInput) -> TurnResult: ...


class EngineConfigurationError(Exception):
    """The workspace names an engine that does not exist or cannot be built; the turn hands off."""
