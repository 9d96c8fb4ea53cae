"""`python -m devstack.customer "hola, cuánto cuesta?"`: a customer writing on WhatsApp.

Posts a text message to the bridge's webhook as Meta would (signed `X-Hub-Signature-256`), for
the demo channel by default. The bot's replies land in the WhatsApp stand-in:
`GET http://127.0.0.1:54321/whatsapp/_control/requests`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid

import httpx

from devstack.whatsapp.status_webhooks import signature


def webhook_body(
    text: str,
    *,
    phone_number_id: str,
    sender: str,
    name: str,
    wamid: str | None = None,
    timestamp: int | None = None,
) -> dict[str, object]:
    """One text message from `sender` as Meta posts it (a new wamid, now, unless given)."""
    return {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "DEMO",
                "changes": [
                    {
                        "field": "messages",
                        "value": {
                            "messaging_product": "whatsapp",
                            "metadata": {
                                "display_phone_number": "15550001111",
                                "phone_number_id": phone_number_id,
                            },
                            "contacts": [{"profile": {"name": name}, "wa_id": sender}],
                            "messages": [
                                {
                                    "from": sender,
                                    "id": wamid or f"wamid.DEMO{uuid.uuid4().hex}",
                                    "timestamp": str(timestamp or int(time.time())),
                                    "type": "text",
                                    "text": {"body": text},
                                }
                            ],
                        },
                    }
                ],
            }
        ],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.customer", description=__doc__)
    parser.add_argument("text")
    parser.add_argument("--bridge-url", default="http://127.0.0.1:8000")
    parser.add_argument(
        "--app-secret", default=os.environ.get("WHATSAPP_APP_SECRET", "local-dev-app-secret")
    )
    parser.add_argument("--phone-number-id", default="1000000000000001")
    parser.add_argument("--from", dest="sender", default="573001234567")
    parser.add_argument("--name", default="Cliente Demo")
    args = parser.parse_args(argv)
    raw = json.dumps(
        webhook_body(
            args.text, phone_number_id=args.phone_number_id, sender=args.sender, name=args.name
        )
    ).encode()
    response = httpx.post(
        f"{args.bridge_url}/webhooks/whatsapp",
        content=raw,
        headers={
            "content-type": "application/json",
            "x-hub-signature-256": signature(raw, args.app_secret),
        },
    )
    sys.stdout.write(f"{response.status_code} {response.text}\n")
    return 0 if response.is_success else 1


if __name__ == "__main__":
    sys.exit(main())
