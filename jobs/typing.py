"""The inbox's "bot is typing" indicator: Realtime broadcasts on `conversation:<id>`, event
`typing`, sent with realtime's stateless `http_send` (no socket to keep alive in the worker).

Every START carries `expiresAt`, so the inbox clears an indicator whose STOP never comes (a
killed worker). Broadcast failures are logged, never raised: typing must not fail a turn.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta

from realtime import AsyncRealtimeClient

log = logging.getLogger(__name__)


class TypingBroadcaster:
    def __init__(self, supabase_url: str, key: str, ttl: timedelta) -> None:
        self._client = AsyncRealtimeClient(f"{supabase_url.rstrip('/')}/realtime/v1", token=key)
        self._ttl = ttl

    def payload(self, conversation_id: uuid.UUID, is_typing: bool) -> dict[str, object]:
        return {
            "isTyping": is_typing,
            "source": "agent",
            "conversationId": str(conversation_id),
            "expiresAt": (datetime.now(UTC) + self._ttl).isoformat() if is_typing else None,
        }

    async def send(self, conversation_id: uuid.UUID, is_typing: bool) -> bool:
        channel = self._client.channel(f"conversation:{conversation_id}")
        try:
            await channel.http_send("typing", self.payload(conversation_id, is_typing), timeout=5)
        except Exception as exc:
            log.warning(
                "jobs.typing.failed",
                extra={
                    "conversation_id": str(conversation_id),
                    "is_typing": is_typing,
                    "detail": f"{type(exc).__name__}: {exc}",
                },
            )
            return False
        finally:
            # Channels accumulate on the client otherwise; this one was never joined.
            self._client.channels.pop(channel.topic, None)
        return True
