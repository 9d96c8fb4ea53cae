"""The JWT checks Realtime makes on the socket `apikey`, the channel `access_token` and the REST
caller: HS256 with the project secret, and `role` plus an integer `exp` in the future."""

from __future__ import annotations

import time
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


def verify(token: str, secret: str) -> dict[str, Any]:
    """Claims of a valid token, else TokenError with Realtime's wording. As in Realtime, the
    signature is checked before the claims."""
    try:
        header = jwt.get_unverified_header(token)
        unverified = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError as exc:
        raise TokenError("MalformedJWT", "The token provided is not a valid JWT") from exc
    if not isinstance(header, dict) or not isinstance(unverified, dict):
        raise TokenError("MalformedJWT", "The token provided is not a valid JWT")
    role = unverified.get("role")
    exp = unverified.get("exp")
    has_claims = isinstance(role, str) and bool(role) and type(exp) is int
    try:
        claims = auth.decode(token, secret).claims
    except auth.JWTError as exc:
        if exc.code == "PGRST303" and type(exp) is int:
            ago = int(time.time()) - exp
            raise TokenError("InvalidJWTToken", f"Token has expired {ago} seconds ago") from exc
        if exc.message.startswith("JWT could not be decoded"):
            raise TokenError("JwtSignatureError", "Failed to validate JWT signature") from exc
        raise TokenError("InvalidJWTToken", "Fields `role` and `exp` are required in JWT") from exc
    if not has_claims:
        raise TokenError("InvalidJWTToken", "Fields `role` and `exp` are required in JWT")
    return claims


def expires_at(claims: dict[str, Any]) -> int:
    exp = claims["exp"]
    assert isinstance(exp, int)
    return exp
