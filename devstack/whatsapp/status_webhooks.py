"""Status webhooks for sent messages: `sent`, `delivered`, `read`, in that order, shortly after a
successful send, posted to the configured URL as Meta posts them.

Each delivery is a separate signed POST (`X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw
body keyed by the app secret>`) with `metadata.phone_number_id` of the send. Failures are logged
and kept in a small log; they never affect the send that caused them. Meta retries failed
deliveries; the stand-in does not.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
from collections import deque
from datetime import UTC, datetime
from typing import Any

import httpx

logger = logging.getLogger(__name__)

STATUSES = ("sent", "delivered", "read")
# Seconds before each status goes out: quick enough for tests, ordered like the real thing.
DELAYS = (0.05, 0.05, 0.05)
# The WABA id and display number a stand-in business answers with (Meta's docs use such values).
WABA_ID = "100000000000001"
DISPLAY_PHONE_NUMBER = "15550000001"


class StatusWebhooks:
    def __init__(self, url: str | None, app_secret: str | None) -> None:
        self.url = url
        self.app_secret = app_secret
        self._tasks: set[asyncio.Task[None]] = set()
        self._client: httpx.AsyncClient | None = None
        self.deliveries: deque[dict[str, Any]] = deque(maxlen=1000)

    def schedule(self, *, wamid: str, recipient_id: str, phone_number_id: str) -> None:
        if self.url is None:
            return
        task = asyncio.create_task(self._deliver_all(wamid, recipient_id, phone_number_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _deliver_all(self, wamid: str, recipient_id: str, phone_number_id: str) -> None:
        for status, delay in zip(STATUSES, DELAYS, strict=True):
            await asyncio.sleep(delay)
            body = payload(
                status, wamid=wamid, recipient_id=recipient_id, phone_number_id=phone_number_id
            )
            await self._post(wamid, status, body)

    async def _post(self, wamid: str, status: str, body: dict[str, Any]) -> None:
        assert self.url is not None
        # Meta signs the bytes it sends, with non-ASCII escaped; sign exactly what is posted.
        raw = json.dumps(body, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json"}
        if self.app_secret:
            headers["X-Hub-Signature-256"] = signature(raw, self.app_secret)
        record: dict[str, Any] = {
            "time": datetime.now(UTC).isoformat(),
            "wamid": wamid,
            "status": status,
            "url": self.url,
        }
        try:
            if self._client is None:
                self._client = httpx.AsyncClient(timeout=5.0)
            response = await self._client.post(self.url, content=raw, headers=headers)
            record["http_status"] = response.status_code
            if response.status_code >= 300:
                logger.warning(
                    "status webhook %s for %s answered %s", status, wamid, response.status_code
                )
        except Exception as exc:
            # Whatever goes wrong with a delivery (refused, unreachable, a malformed URL) stays
            # here: it is logged and recorded, and neither the send nor the server is affected.
            record["error"] = f"{type(exc).__name__}: {exc}"
            logger.warning("status webhook %s for %s failed: %s", status, wamid, record["error"])
        self.deliveries.append(record)


def signature(raw: bytes, app_secret: str) -> str:
    return "sha256=" + hmac.new(app_secret.encode(), raw, hashlib.sha256).hexdigest()


def payload(status: str, *, wamid: str, recipient_id: str, phone_number_id: str) -> dict[str, Any]:
    now = int(time.time())
    conversation: dict[str, Any] = {
        "id": hashlib.sha256(f"{phone_number_id}:{recipient_id}".encode()).hexdigest()[:30],
        "origin": {"type": "service"},
    }
    if status == "sent":
        # Only the first status of a conversation window says when the window closes.
        conversation["expiration_timestamp"] = str(now + 24 * 3600)
    value = {
        "messaging_product": "whatsapp",
        "metadata": {
            "display_phone_number": DISPLAY_PHONE_NUMBER,
            "phone_number_id": phone_number_id,
        },
        "statuses": [
            {
                "id": wamid,
                "status": status,
                "timestamp": str(now),
                "recipient_id": recipient_id,
                "conversation": conversation,
                "pricing": {"billable": True, "pricing_model": "CBP", "category": "service"},
            }
        ],
    }
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": WABA_ID, "changes": [{"value": value, "field": "messages"}]}],
    }
