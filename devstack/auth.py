"""JWT checks shared by the stand-ins: HS256 with the configured secret, `role` and `exp` read as
PostgREST and Realtime read them; and the API gateway's check of the `apikey` (`ApiKeyGate`).

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
from urllib.parse import parse_qs

import jwt
from starlette.types import ASGIApp, Receive, Scope, Send


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


# -- the API gateway's key check ------------------------------------------------------------------

# The claims of the project keys `supabase start` prints (signed with the project's JWT secret,
# they are the well-known local anon and service_role keys byte for byte).
_PROJECT_KEY_CLAIMS = (
    {"iss": "supabase-demo", "role": "anon", "exp": 1983812996},
    {"iss": "supabase-demo", "role": "service_role", "exp": 1983812996},
)
# The prefixes whose HTTP requests pass the gateway's key check (the Realtime WebSocket checks
# its `apikey` itself).
GATED_PREFIXES = ("/rest/v1/", "/auth/v1/", "/realtime/v1/api/")
_INVALID_API_KEY = (
    b'{"message":"Invalid API key",'
    b'"hint":"Double check your Supabase `anon` or `service_role` API key."}'
)


@functools.lru_cache(maxsize=8)
def project_keys(secret: str) -> frozenset[str]:
    """The anon and service_role keys of a project with this JWT secret."""
    return frozenset(
        jwt.encode(claims, secret, algorithm="HS256") for claims in _PROJECT_KEY_CLAIMS
    )


class ApiKeyGate:
    """The Supabase API gateway's key check, as ASGI middleware: an HTTP request under
    `GATED_PREFIXES` whose `apikey` (header, else query parameter) is not one of the project's
    keys is refused with the platform gateway's 401 before any service sees it. A request
    without an `apikey` goes on, as before (the services answer it themselves)."""

    def __init__(self, app: ASGIApp, secret: str) -> None:
        self.app = app
        self.secret = secret

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and str(scope.get("path", "")).startswith(GATED_PREFIXES):
            key = _apikey(scope)
            if key is not None and key not in project_keys(self.secret):
                await _refuse(send)
                return
        await self.app(scope, receive, send)


def _apikey(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name.lower() == b"apikey":
            return bytes(value).decode("latin-1")
    query = bytes(scope.get("query_string", b"")).decode("latin-1")
    values = parse_qs(query, keep_blank_values=True).get("apikey")
    return values[0] if values else None


async def _refuse(send: Send) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 401,
            "headers": [
                (b"content-type", b"application/json; charset=utf-8"),
                (b"content-length", str(len(_INVALID_API_KEY)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": _INVALID_API_KEY})
