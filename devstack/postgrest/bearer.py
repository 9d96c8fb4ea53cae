"""How PostgREST reads `Authorization: Bearer <jwt>`: the role to switch to and the claims it
exposes.

PostgREST v14 checks, in order: the token has three parts, the signature verifies with the
configured key (HS256/384/512 with the shared secret here), the payload is a JSON object, and the
`exp` / `nbf` / `iat` claims are numbers within 30 s of clock skew. Each failure has its own
message; `devstack.auth` is shared with Realtime, whose messages differ, so PostgREST's wording
lives here.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from devstack.postgrest.errors import PostgrestError

_CLOCK_SKEW_SECONDS = 30
_HMAC_DIGESTS = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}


@dataclass(frozen=True)
class Identity:
    """Who the request runs as."""

    role: str
    # What `request.jwt.claims` holds: the token's claims with `role` set to the role used.
    claims: dict[str, Any]
    # PostgREST's notion of "authenticated": the role is not the anonymous role.
    authed: bool


def identify(authorization: str | None, *, secret: str, anon_role: str) -> Identity:
    token = _bearer(authorization)
    claims: Mapping[str, Any] = {}
    if token is not None:
        claims = _signed_claims(token, secret)
        _check_time_claims(claims)
    role_claim = claims.get("role")
    if role_claim is None:
        role = anon_role
    elif isinstance(role_claim, str):
        role = role_claim
    else:
        # PostgREST's JSPath lookup renders a non-string role claim as its JSON text.
        role = json.dumps(role_claim, separators=(",", ":"))
    return Identity(role=role, claims={**claims, "role": role}, authed=role != anon_role)


def _bearer(authorization: str | None) -> str | None:
    # wai-extra's extractBearerAuth: the scheme up to the first space, case-insensitive; an empty
    # token after "Bearer" is still a token (and then an error), another scheme means no token.
    if authorization is None:
        return None
    scheme, _, rest = authorization.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return rest.strip()


# Clients send the same few tokens on every request (an app's key, a user's session token), and
# checking the signature and decoding the claims is most of the work, so that part is kept per
# token. Time claims change meaning with the clock: they are checked on every request.
@functools.lru_cache(maxsize=1024)
def _signed_claims(token: str, secret: str) -> Mapping[str, Any]:
    """The claims of a token whose signature verifies; read-only, being shared."""
    if token == "":
        raise _decode_error("Empty JWT is sent in Authorization header")
    parts = token.split(".")
    if len(parts) != 3:
        raise _decode_error(f"Expected 3 parts in JWT; got {len(parts)}")
    header_b64, payload_b64, signature_b64 = parts
    try:
        header = json.loads(_b64decode(header_b64))
        signature = _b64decode(signature_b64)
        payload_bytes = _b64decode(payload_b64)
    except (ValueError, binascii.Error) as exc:
        raise _decode_error("JWT cryptographic operation failed") from exc
    if not isinstance(header, dict):
        raise _decode_error("JWT cryptographic operation failed")
    algorithm = header.get("alg")
    if algorithm == "none":
        raise _decode_error(
            "Wrong or unsupported encoding algorithm",
            "JWT is unsecured but expected 'alg' was not 'none'",
        )
    digest = _HMAC_DIGESTS.get(algorithm) if isinstance(algorithm, str) else None
    signing_input = f"{header_b64}.{payload_b64}".encode()
    if digest is None or not hmac.compare_digest(
        hmac.new(secret.encode(), signing_input, digest).digest(), signature
    ):
        raise _decode_error(
            "No suitable key or wrong key type", "None of the keys was able to decode the JWT"
        )
    try:
        claims = json.loads(payload_bytes)
    except ValueError:
        claims = None
    if not isinstance(claims, dict):
        raise _claims_error("Parsing claims failed")
    return MappingProxyType(claims)


def _check_time_claims(claims: Mapping[str, Any]) -> None:
    now = int(time.time())
    # (claim, the latest acceptable value or None, the earliest or None, the failure message)
    checks = (
        ("exp", None, now - _CLOCK_SKEW_SECONDS, "JWT expired"),
        ("nbf", now + _CLOCK_SKEW_SECONDS, None, "JWT not yet valid"),
        ("iat", now + _CLOCK_SKEW_SECONDS, None, "JWT issued at future"),
    )
    for name, latest, earliest, message in checks:
        if claims.get(name) is None:
            continue
        value = claims[name]
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _claims_error(f"The JWT '{name}' claim must be a number")
        if (latest is not None and int(value) > latest) or (
            earliest is not None and int(value) < earliest
        ):
            raise _claims_error(message)
    audience = claims.get("aud")
    # No audience is configured (as on Supabase), so any string or list of strings is accepted.
    if audience is not None and not (
        isinstance(audience, str)
        or (isinstance(audience, list) and all(isinstance(a, str) for a in audience))
    ):
        raise _claims_error("The JWT 'aud' claim must be a string or an array of strings")


def _b64decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _decode_error(message: str, details: str | None = None) -> PostgrestError:
    return PostgrestError(
        401, "PGRST301", message, details=details, headers=_invalid_token(message)
    )


def _claims_error(message: str) -> PostgrestError:
    return PostgrestError(401, "PGRST303", message, headers=_invalid_token(message))


def _invalid_token(message: str) -> dict[str, str]:
    return {"WWW-Authenticate": f'Bearer error="invalid_token", error_description="{message}"'}
