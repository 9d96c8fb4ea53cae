"""Supabase Auth's endpoints an inbox uses: `POST /token` (grants `password` and
`refresh_token`), `GET /user` and `POST /logout`, and the one admin read a back office uses,
`GET /admin/users/<id>` (supabase-py's `auth.admin.get_user_by_id`), with Auth's checks in Auth's
order (`internal/api/token.go`, `tokens/service.go`, `auth.go`, `logout.go`, `admin.go`)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import bcrypt
import jwt
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from devstack.auth import bearer_token
from devstack.gotrue import access_token, store
from devstack.gotrue.errors import (
    AuthError,
    OAuthError,
    bad_request,
    forbidden,
    invalid_credentials,
    json_response,
)
from devstack.state import DevstackState

# GOTRUE_SECURITY_REFRESH_TOKEN_REUSE_INTERVAL's default: a revoked token still refreshes for
# this long (a client that lost the answer to its first refresh may try again).
REUSE_INTERVAL = timedelta(seconds=10)
_DEFAULT_AUD = "authenticated"
# GOTRUE_JWT_ADMIN_ROLES' default.
_ADMIN_ROLES = ("service_role", "supabase_admin")


async def token(request: Request, state: DevstackState) -> Response:
    grant = request.query_params.get("grant_type", "")
    if grant == "password":
        return await _password_grant(request, state)
    if grant == "refresh_token":
        return await _refresh_grant(request, state)
    raise bad_request("invalid_credentials", "unsupported_grant_type")


async def user(request: Request, state: DevstackState) -> Response:
    async with state.pool.acquire() as conn:
        row, _ = await _authenticated(request, state, conn)
    return json_response(access_token.user_json(row), 200, {})


async def admin_user(request: Request, state: DevstackState) -> Response:
    """A user, for a token of an admin role (Auth's `requireAdmin`, then `loadUser`)."""
    claims = _claims(request, state)
    if claims.get("role") not in _ADMIN_ROLES:
        raise forbidden("not_admin", "User not allowed")
    try:
        user_id = uuid.UUID(request.path_params["user_id"])
    except ValueError:
        raise bad_request("validation_failed", "user_id must be an UUID") from None
    async with state.pool.acquire() as conn:
        row = await store.user_by_id(conn, user_id)
    _check_strings(row)
    if row is None:
        raise AuthError(404, "user_not_found", "User not found")
    return json_response(access_token.user_json(row), 200, {})


async def logout(request: Request, state: DevstackState) -> Response:
    scope = request.query_params.get("scope", "global")
    if scope not in ("global", "local", "others"):
        raise bad_request("validation_failed", f'Unsupported logout scope "{scope}"')
    async with state.pool.acquire() as conn:
        row, session_id = await _authenticated(request, state, conn)
        async with conn.transaction():
            await store.end_sessions(conn, row["id"], session_id, scope)
    return Response(status_code=204)


# -- grants --------------------------------------------------------------------------------------


async def _password_grant(request: Request, state: DevstackState) -> Response:
    params = await _json_params(request)
    email = _text(params.get("email"))
    phone = _text(params.get("phone"))
    password = _text(params.get("password"))
    if email and phone:
        raise bad_request(
            "validation_failed",
            "Only an email address or phone number should be provided on login.",
        )
    if not email and not phone:
        raise bad_request("validation_failed", "missing email or phone")
    aud = request.headers.get("x-jwt-aud") or _DEFAULT_AUD
    async with state.pool.acquire() as conn:
        if email:
            row = await store.user_by_email(conn, email, aud)
        else:
            row = await store.user_by_phone(conn, phone.lstrip("+").replace(" ", ""), aud)
        _check_strings(row)
        if row is None or not row["encrypted_password"]:
            raise invalid_credentials()
        if row["banned"]:
            raise bad_request("user_banned", "User is banned")
        if not await run_in_threadpool(_password_matches, password, row["encrypted_password"]):
            raise invalid_credentials()
        if email and row["email_confirmed_at"] is None:
            raise bad_request("email_not_confirmed", "Email not confirmed")
        if phone and row["phone_confirmed_at"] is None:
            raise bad_request("phone_not_confirmed", "Phone not confirmed")
        async with conn.transaction():
            session, refresh = await store.start_session(
                conn,
                row["id"],
                "password",
                request.headers.get("user-agent"),
                request.client.host if request.client else None,
            )
            return await _issued(request, state, conn, row["id"], session.id, refresh)


async def _refresh_grant(request: Request, state: DevstackState) -> Response:
    params = await _json_params(request)
    given = _text(params.get("refresh_token"))
    if not given:
        raise OAuthError("invalid_request", "refresh_token required")
    async with state.pool.acquire() as conn:
        async with conn.transaction():
            found = await store.refresh_token(conn, given, for_update=True)
            row = None if found is None else await store.user_by_id(conn, found.user_id)
            _check_strings(row)
            if found is None or row is None:
                raise bad_request(
                    "refresh_token_not_found", "Invalid Refresh Token: Refresh Token Not Found"
                )
            if row["banned"]:
                raise bad_request("user_banned", "Invalid Refresh Token: User Banned")
            session = (
                None
                if found.session_id is None
                else await store.session_by_id(conn, found.session_id)
            )
            if session is None:
                raise bad_request(
                    "session_not_found", "Invalid Refresh Token: No Valid Session Found"
                )
            issued = await _next_token(conn, found, session.id)
            if issued is not None:
                return await _issued(request, state, conn, row["id"], session.id, issued)
        # Auth commits the revocation of the session's tokens, then refuses.
        raise bad_request("refresh_token_already_used", "Invalid Refresh Token: Already Used")


async def _next_token(
    conn: store.Connection, found: store.RefreshToken, session_id: uuid.UUID
) -> str | None:
    """The token to answer a refresh with: the successor, or for a revoked token the successor it
    already has; None when a revoked token comes back past the reuse interval, which revokes
    every token of the session."""
    if found.revoked:
        active = await store.active_child(conn, session_id)
        if active is not None and active["parent"] == found.token:
            return str(active["token"])
        if datetime.now(UTC) > found.updated_at + REUSE_INTERVAL:
            await store.revoke_session_tokens(conn, session_id)
            return None
    return await store.swap(conn, found)


async def _issued(
    request: Request,
    state: DevstackState,
    conn: store.Connection,
    user_id: uuid.UUID,
    session_id: uuid.UUID,
    refresh: str,
) -> Response:
    row = await store.user_by_id(conn, user_id)
    assert row is not None
    amr = await store.amr(conn, session_id)
    signed, expires_at = access_token.sign(
        row, session_id, amr, issuer=_issuer(request), secret=state.config.jwt_secret
    )
    body = {
        "access_token": signed,
        "token_type": "bearer",
        "expires_in": access_token.ACCESS_TOKEN_SECONDS,
        "expires_at": expires_at,
        "refresh_token": refresh,
        "user": access_token.user_json(row),
    }
    headers = {"sb-auth-user-id": str(user_id), "sb-auth-session-id": str(session_id)}
    return json_response(body, 200, headers)


# -- the caller ----------------------------------------------------------------------------------


async def _authenticated(
    request: Request, state: DevstackState, conn: store.Connection
) -> tuple[asyncpg.Record, uuid.UUID | None]:
    """The user (and session) of the Bearer token, as Auth's `requireAuthentication` finds them."""
    claims = _claims(request, state)
    sub = claims.get("sub")
    if not sub:
        raise forbidden("bad_jwt", "invalid claim: missing sub claim")
    try:
        user_id = uuid.UUID(str(sub))
    except ValueError:
        raise bad_request("bad_jwt", "invalid claim: sub claim must be a UUID") from None
    row = await store.user_by_id(conn, user_id)
    _check_strings(row)
    if row is None:
        raise forbidden("user_not_found", "User from sub claim in JWT does not exist")
    session_id: uuid.UUID | None = None
    if claims.get("session_id"):
        try:
            session_id = uuid.UUID(str(claims["session_id"]))
        except ValueError:
            raise forbidden("bad_jwt", "invalid claim: session_id claim must be a UUID") from None
        if await store.session_by_id(conn, session_id) is None:
            raise forbidden(
                "session_not_found", "Session from session_id claim in JWT does not exist"
            )
    if row["banned"]:
        raise forbidden("user_banned", "User is banned")
    return row, session_id


def _claims(request: Request, state: DevstackState) -> dict[str, Any]:
    """The Bearer token's claims, verified (Auth's `extractBearerToken` and `parseJWTClaims`)."""
    bearer = bearer_token(request.headers.get("authorization"))
    if bearer is None:
        raise AuthError(401, "no_authorization", "This endpoint requires a valid Bearer token")
    try:
        claims: dict[str, Any] = jwt.decode(
            bearer,
            state.config.jwt_secret,
            algorithms=["HS256", "HS384", "HS512"],
            options={"verify_aud": False, "require": []},
        )
    except jwt.PyJWTError as exc:
        raise forbidden(
            "bad_jwt", f"invalid JWT: unable to parse or verify signature, {_go_jwt_error(exc)}"
        ) from None
    return claims


def _go_jwt_error(exc: jwt.PyJWTError) -> str:
    # golang-jwt's wording for the failures a client meets
    if isinstance(exc, jwt.ExpiredSignatureError):
        return "token has invalid claims: token is expired"
    if isinstance(exc, jwt.InvalidSignatureError):
        return "token signature is invalid: signature is invalid"
    return f"token is malformed: {exc}"


# -- helpers -------------------------------------------------------------------------------------


def _issuer(request: Request) -> str:
    # GOTRUE_JWT_ISSUER as the Supabase CLI sets it: the API's external URL + /auth/v1
    return str(request.base_url).rstrip("/") + "/auth/v1"


async def _json_params(request: Request) -> dict[str, Any]:
    body = await request.body()
    try:
        value = json.loads(body)
    except ValueError as exc:
        detail = "unexpected end of JSON input" if not body.strip() else str(exc)
        raise bad_request("bad_json", f"Could not parse request body as JSON: {detail}") from None
    if not isinstance(value, dict):
        raise bad_request(
            "bad_json", "Could not parse request body as JSON: json: cannot unmarshal into object"
        )
    return value


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _password_matches(password: str, hashed: str) -> bool:
    encoded = password.encode()
    # bcrypt reads at most 72 bytes; Go's bcrypt refuses longer passwords outright.
    if len(encoded) > 72 or not hashed.startswith(("$2a$", "$2b$", "$2y$")):
        return False
    try:
        return bcrypt.checkpw(encoded, hashed.encode())
    except ValueError:
        return False


def _check_strings(row: asyncpg.Record | None) -> None:
    """Auth scans its token columns into Go strings: a NULL there fails the whole read."""
    if row is None:
        return
    for column in store.NOT_NULL_STRINGS:
        if row[column] is None:
            raise AuthError(500, "unexpected_failure", "Database error querying schema")
