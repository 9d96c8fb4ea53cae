"""JWT checks shared by the stand-ins: HS256 with the configured secret, `role` and `exp` read as
PostgREST and Realtime read them.

A token that passed is remembered, as PostgREST's JWT cache does: the same token string is not
verified again until its `exp`, the only check whose answer changes with time (a token valid now
stays past its `nbf` and `iat`). Clients send the same few keys with every request.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
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
    claims: Mapping[str, Any]  # read-only: one object serves every request with the token


def decode(token: str, secret: str) -> Claims:
    claims, exp = _verified(token, secret)
    # PyJWT's own test: expired once `exp <= now`, in whole seconds.
    if exp is not None and exp <= int(time.time()):
        raise JWTError("PGRST303", "JWT expired")
    return claims


# Kept per token like PostgREST's side of the stand-in (`postgrest.bearer`); a refused token raises
# and so is never kept.
@functools.lru_cache(maxsize=1024)
def _verified(token: str, secret: str) -> tuple[Claims, int | None]:
    claims = _decode(token, secret)
    exp = claims.claims.get("exp")
    return claims, None if exp is None else int(exp)


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
    return Claims(role=role or "", claims=MappingProxyType(claims))


def bearer_token(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()
