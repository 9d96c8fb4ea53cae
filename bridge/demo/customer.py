"""The customer's side of WhatsApp: text messages posted to the bridge's webhook as Meta posts
them, signed `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body, keyed by the app
secret>` (what `bridge.api.signature` verifies)."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid

import httpx

from bridge.demo.script import Customer


def sign(body: bytes, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def webhook_body(
    texts: list[tuple[str, str]], *, customer: Customer, phone_number_id: str, timestamp: int
) -> dict[str, object]:
    """Text messages `(wamid, text)` of one customer, in one delivery of the `messages` field of
    a WhatsApp Business Account webhook (Meta batches messages that arrive together)."""
    messages = [
        {
            "from": customer.phone,
            "id": wamid,
            "timestamp": str(timestamp),
            "type": "text",
            "text": {"body": text},
        }
        for wamid, text in texts
    ]
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550001111", "phone_number_id": phone_number_id},
        "contacts": [{"profile": {"name": customer.name}, "wa_id": customer.phone}],
        "messages": messages,
    }
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": "DEMO", "changes": [{"field": "messages", "value": value}]}],
    }


class WebhookRefused(Exception):
    """The bridge answered a webhook with something other than 200."""


class Phone:
    """Posts what the customer writes, as signed webhooks."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        bridge_url: str,
        app_secret: str,
        phone_number_id: str,
        customer: Customer,
    ) -> None:
        self._http = http
        self._url = f"{bridge_url.rstrip('/')}/webhooks/whatsapp"
        self._secret = app_secret
        self._phone_number_id = phone_number_id
        self.customer = customer

    async def write(self, *texts: str) -> list[str]:
        """Posts messages in one signed webhook; returns their wamids once the bridge has stored
        them (its 200)."""
        batch = [(f"wamid.DEMO{uuid.uuid4().hex}", text) for text in texts]
        body = json.dumps(
            webhook_body(
                batch,
                customer=self.customer,
                phone_number_id=self._phone_number_id,
                timestamp=int(time.time()),
            )
        ).encode()
        response = await self._http.post(
            self._url,
            content=body,
            headers={
                "content-type": "application/json",
                "x-hub-signature-256": sign(body, self._secret),
            },
        )
        if response.status_code != 200:
            hint = ": is WHATSAPP_APP_SECRET the API's?" if response.status_code == 401 else ""
            raise WebhookRefused(
                f"the webhook answered {response.status_code} {response.text[:200]}{hint}"
            )
        return [wamid for wamid, _ in batch]
