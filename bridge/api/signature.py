"""Webhook signatures: an HMAC-SHA256 of the raw body, hex, optionally `sha256=`-prefixed.

Meta sends it in `X-Hub-Signature-256` (key: the app secret); 360dialog in
`X-360Dialog-Signature` (key: the secret configured for its webhook).
"""

from __future__ import annotations

import hashlib
import hmac

META_HEADER = "x-hub-signature-256"
D360_HEADER = "x-360dialog-signature"


def sign(body: bytes, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def is_valid(body: bytes, header_value: str, secret: str) -> bool:
    """Constant-time check of one header value against the body; never true for a blank
    secret, which anyone could sign with."""
    if not secret.strip():
        return False
    given = header_value.strip()
    if given.lower().startswith("sha256="):
        given = given[len("sha256=") :]
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(given.lower().encode(), expected.encode())
