"""JWT checks shared by the stand-ins: HS256 with the configured secret, `role` and `exp` read as
PostgREST and Realtime read them."""

from __future__ import annotations

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


def decode(token: str, secret: str) -> Claims:
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
