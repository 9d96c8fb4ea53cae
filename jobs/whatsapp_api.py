"""Sending through WhatsApp: Meta's Graph API (`Authorization: Bearer`) or 360dialog's hosting of
it (`D360-API-KEY`, no phone-number id in the path). Errors are typed by what the sender may do:

    SendError
    ├── Throttled     definitely not sent; back off and try the same message again
    ├── WindowClosed  131047: outside the 24 h customer-service window; do not send
    ├── Rejected      definitely not sent (bad request, auth, undeliverable); do not retry
    └── Ambiguous     timeout, connection drop after the request, 5xx: it may have been sent,
                      so it is never re-sent blindly
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import aiohttp

THROTTLE_CODES = {4, 80007, 130429, 131056}
WINDOW_CLOSED = 131047


class SendError(Exception):
    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class Throttled(SendError):
    pass


class WindowClosed(SendError):
    pass


class Rejected(SendError):
    pass


class Ambiguous(SendError):
    pass


@dataclass(frozen=True)
class Channel:
    provider: str  # 'meta' | '360dialog'
    phone_number_id: str
    base_url: str
    credential: str


class WhatsAppClient:
    def __init__(self, http: aiohttp.ClientSession) -> None:
        self._http = http

    def _request(self, channel: Channel, body: dict[str, Any]) -> tuple[str, dict[str, str]]:
        if channel.provider == "360dialog":
            return f"{channel.base_url.rstrip('/')}/messages", {"D360-API-KEY": channel.credential}
        return (
            f"{channel.base_url.rstrip('/')}/{channel.phone_number_id}/messages",
            {"Authorization": f"Bearer {channel.credential}"},
        )

    async def _post(self, channel: Channel, body: dict[str, Any]) -> dict[str, Any]:
        url, headers = self._request(channel, body)
        try:
            async with self._http.post(url, json=body, headers=headers) as response:
                status = response.status
                text = await response.text(errors="replace")
        except aiohttp.ClientConnectorError as exc:
            # Nothing reached the server: safe to call a rejection, not ambiguous.
            raise Rejected(f"cannot connect: {exc}") from exc
        except TimeoutError as exc:  # aiohttp's own timeouts are TimeoutErrors too
            raise Ambiguous(f"timeout: {exc or type(exc).__name__}") from exc
        except aiohttp.ClientError as exc:  # dropped after the request was written, bad answer
            raise Ambiguous(f"transport error: {type(exc).__name__}: {exc}") from exc
        if status >= 500:
            raise Ambiguous(f"HTTP {status}: {text[:300]}")
        try:
            data = json.loads(text)
        except ValueError:
            data = {}
        if 200 <= status < 300 and isinstance(data, dict):
            return data
        error = data.get("error", {}) if isinstance(data, dict) else {}
        code = error.get("code") if isinstance(error, dict) else None
        message = (error.get("message") if isinstance(error, dict) else None) or text[:300]
        code = int(code) if isinstance(code, int | str) and str(code).isdigit() else None
        if code in THROTTLE_CODES or status == 429:
            raise Throttled(message, code)
        if code == WINDOW_CLOSED:
            raise WindowClosed(message, code)
        raise Rejected(f"HTTP {status}: {message}", code)

    async def send_text(self, channel: Channel, to: str, body: str) -> str:
        """Send a text; returns the new message's wamid."""
        data = await self._post(
            channel,
            {
                "messaging_product": "whatsapp",
                "recipient_type": "individual",
                "to": to,
                "type": "text",
                "text": {"body": body, "preview_url": False},
            },
        )
        messages = data.get("messages")
        if not (
            isinstance(messages, list)
            and messages
            and isinstance(messages[0], dict)
            and isinstance(messages[0].get("id"), str)
        ):
            raise Ambiguous(f"accepted without a message id: {data!r}"[:300])
        wamid: str = messages[0]["id"]
        return wamid

    async def send_typing(self, channel: Channel, wamid: str) -> None:
        """Mark `wamid` read and show "typing…" to the customer (dismissed on reply or 25 s)."""
        await self._post(
            channel,
            {
                "messaging_product": "whatsapp",
                "status": "read",
                "message_id": wamid,
                "typing_indicator": {"type": "text"},
            },
        )
