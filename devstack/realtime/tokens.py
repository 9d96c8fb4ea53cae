"""The JWT checks Realtime makes on the socket `apikey`, the channel `access_token` and the REST
caller: HS256 with the project secret, and `role` plus an integer `exp` in the future."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import jwt

from devstack import auth


class TokenError(Exception):
    """`code` is Realtime's error code (the prefix of a join error reason)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def reason(self) -> str:
        return f"{self.code}: {self.message}"


def verify(token: str, secret: str) -> Mapping[str, Any]:
    """Claims of a valid token, else TokenError with Realtime's wording. As in Realtime, the
    signature is checked before the claims."""
    try:
        claims = auth.decode(token, secret).claims
    except auth.JWTError as exc:
        raise _explained(token, exc) from exc
    if not _has_claims(claims):
        raise TokenError("InvalidJWTToken", "Fields `role` and `exp` are required in JWT")
    return claims


def _has_claims(claims: Mapping[str, Any]) -> bool:
    role = claims.get("role")
    return isinstance(role, str) and bool(role) and type(claims.get("exp")) is int


def _explained(token: str, exc: auth.JWTError) -> TokenError:
    """Realtime's error for a token that failed: malformed, then signature, then claims."""
    try:
        header = jwt.get_unverified_header(token)
        unverified = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return TokenError("MalformedJWT", "The token provided is not a valid JWT")
    if not isinstance(header, dict) or not isinstance(unverified, dict):
        return TokenError("MalformedJWT", "The token provided is not a valid JWT")
    exp = unverified.get("exp")
    if exc.code == "PGRST303" and type(exp) is int:
        ago = int(time.time()) - exp
        return TokenError("InvalidJWTToken", f"Token has expired {ago} seconds ago")
    if exc.message.startswith("JWT could not be decoded"):
        return TokenError("JwtSignatureError", "Failed to validate JWT signature")
    return TokenError("InvalidJWTToken", "Fields `role` and `exp` are required in JWT")


def expires_at(claims: Mapping[str, Any]) -> int:
    exp = claims["exp"]
    assert isinstance(exp, int)
    return exp
