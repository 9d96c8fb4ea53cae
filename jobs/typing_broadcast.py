"""The inbox's "bot is typing" indicator: Realtime broadcasts on `conversation:<id>`, event
`typing`, through Realtime's stateless REST endpoint
(`POST /realtime/v1/api/broadcast/<topic>/events/<event>`, what realtime-py's `http_send` calls):
no socket to keep alive in the worker.

The request is the one `http_send` makes (same path encoding, apikey and Bearer headers, JSON
body), sent over the worker's pooled aiohttp session: `http_send` builds a new httpx client per
call, and building one (its TLS context) twice a turn would cost more CPU than the rest of the
turn (docs/performance.md).

Every START carries `expiresAt`, so the inbox clears an indicator whose STOP never comes (a
killed worker). Broadcast failures are logged, never raised: typing must not fail a turn.

Public or private is the workspace's choice (`workspace_agent_config.typing_channel_private`).
Realtime keeps the two apart: a public channel is open to anyone holding the anon key and the
conversation id, a private one only to whom the policies on `realtime.messages` allow (members
of the workspace; only the service role, this worker, may send there).
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import aiohttp

log = logging.getLogger(__name__)

# A broadcast that takes longer is dropped: the indicator's expiry covers a missing one.
_TIMEOUT = aiohttp.ClientTimeout(total=5)


def private_channel(config: Mapping[str, Any]) -> bool:
    """Whether a workspace's agent config (a `workspace_agent_config` row as JSON, `{}` when
    it has none) puts typing on the private channel."""
    return config.get("typing_channel_private") is True


class TypingBroadcaster:
    def __init__(
        self, http: aiohttp.ClientSession, supabase_url: str, key: str, ttl: timedelta
    ) -> None:
        self._http = http
        self._endpoint = f"{supabase_url.rstrip('/')}/realtime/v1/api/broadcast"
        self._headers = {
            "apikey": key,
            "Authorization": f"Bearer {key}",
            "Content-Type": "application/json",
        }
        self._ttl = ttl

    def payload(self, conversation_id: uuid.UUID, is_typing: bool) -> dict[str, object]:
        return {
            "isTyping": is_typing,
            "source": "agent",
            "conversationId": str(conversation_id),
            "expiresAt": (datetime.now(UTC) + self._ttl).isoformat() if is_typing else None,
        }

    async def send(
        self, conversation_id: uuid.UUID, is_typing: bool, *, private: bool = False
    ) -> bool:
        topic = quote(f"conversation:{conversation_id}", safe="")
        # As realtime-py's http_send marks a private channel's broadcast.
        query = "?private=true" if private else ""
        try:
            async with self._http.post(
                f"{self._endpoint}/{topic}/events/typing{query}",
                headers=self._headers,
                data=json.dumps(self.payload(conversation_id, is_typing)),
                timeout=_TIMEOUT,
            ) as response:
                if response.status != 202:
                    text = await response.text(errors="replace")
                    raise RuntimeError(f"HTTP {response.status}: {text[:200]}")
        except Exception as exc:
            log.warning(
                "jobs.typing_broadcast.failed",
                extra={
                    "conversation_id": str(conversation_id),
                    "is_typing": is_typing,
                    "private": private,
                    "detail": f"{type(exc).__name__}: {exc}",
                },
            )
            return False
        return True
