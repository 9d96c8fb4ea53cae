"""One turn's inbound messages as one input: a burst is answered once.

Texts are joined in arrival order, one per line (capture reads each line as a segment); media
are listed by type for the non-text policy. Reactions and system notices carry nothing to
answer. Only the first `MAX_ANALYSED_CHARS` are read: WhatsApp caps a text at 4,096
characters, and a pasted novel must not cost more than a message.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from jobs.engine.protocol import TEXT_TYPES, InboundMessage

IGNORED_TYPES = frozenset({"reaction", "system"})
MAX_ANALYSED_CHARS = 4096


@dataclass(frozen=True)
class Burst:
    text: str
    media_types: tuple[str, ...]  # image, audio, sticker, location, ... (captioned or not)


def combine(messages: Sequence[InboundMessage]) -> Burst:
    texts: list[str] = []
    media: list[str] = []
    for message in messages:
        if message.type in IGNORED_TYPES:
            continue
        if message.type not in TEXT_TYPES:
            media.append(message.type or "unknown")
        if message.text and message.text.strip():
            texts.append(message.text.strip())
    return Burst(text="\n".join(texts)[:MAX_ANALYSED_CHARS], media_types=tuple(media))
