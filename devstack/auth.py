"""JWT checks shared by the stand-ins: HS256 with the configured secret, `role` and `exp` read as
PostgREST and Realtime read them.

A token that passed is remembered, as PostgREST's JWT cache does: the same token string is not
verified again until its `exp`, the only check whose answer changes with time (a token valid now
stays past its `nbf` and `iat`). Clients send the same few keys with every request.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import jwt


class JWTError(Exception):
    """The token is missing, malformed, badly signed or expired; `code` is PostgREST's."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Claims:
    role: str
    claims: dict[str, Any]


# (token, secret) -> (claims, exp): at most _CACHE_SIZE tokens, forgotten all at once when full.
_verified: dict[tuple[str, str], tuple[Claims, int | None]] = {}
_CACHE_SIZE = 1024


def decode(token: str, secret: str) -> Claims:
    key = (token, secret)
    known = _verified.get(key)
    if known is not None:
        claims, exp = known
        # PyJWT's own test: expired once `exp <= now`, in whole seconds.
        if exp is None or exp > int(time.time()):
            return claims
        del _verified[key]
        raise JWTError("PGRST303", "JWT expired")
    checked = _decode(token, secret)
    if len(_verified) >= _CACHE_SIZE:
        _verified.clear()
    exp = checked.claims.get("exp")
    _verified[key] = (checked, int(exp) if exp is not None else None)
    return checked


def _decode(token: str, secret: str) -> Claims:
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=["HS256"],
            options={"verify_aud": False, "require": []},
        )
    except jwt.ExpiredSignatureError as exc:
        raise JWTError("PGRST303", "JWT expired") from exc
    except jwt.PyJWTError as exc:
        raise JWTError("PGRST301", f"JWT could not be decoded: {exc}") from exc
    if not isinstance(claims, dict):
        raise JWTError("PGRST301", "JWT claims are not an object")
    role = claims.get("role")
    if role is not None and not isinstance(role, str):
        raise JWTError("PGRST301", "JWT role claim is not a string")
    return Claims(role=role or "", claims=claims)


def bearer_token(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()
