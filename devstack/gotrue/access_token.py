"""The access token and the user object Supabase Auth hands out.

Claims follow Auth's `AccessTokenClaims` (`internal/tokens/service.go`), in its order: `iss`,
`sub`, `aud` (a plain string), `exp`, `iat`, then `email`, `phone`, `app_metadata`,
`user_metadata`, `role`, `aal`, `amr`, `session_id`, `is_anonymous`. HS256 with the project's
JWT secret, `typ: JWT`. The user object is Auth's `models.User` JSON.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
import jwt

# GOTRUE_JWT_EXP on Supabase (and the CLI's default `jwt_expiry`).
ACCESS_TOKEN_SECONDS = 3600


def sign(
    user: asyncpg.Record,
    session_id: uuid.UUID,
    amr: list[dict[str, object]],
    *,
    issuer: str,
    secret: str,
) -> tuple[str, int]:
    """The signed access token and its `exp`."""
    issued_at = int(time.time())
    expires_at = issued_at + ACCESS_TOKEN_SECONDS
    claims: dict[str, Any] = {
        "iss": issuer,
        "sub": str(user["id"]),
        "aud": user["aud"] or "",
        "exp": expires_at,
        "iat": issued_at,
        "email": user["email"] or "",
        "phone": user["phone"] or "",
        "app_metadata": _json_map(user["raw_app_meta_data"]),
        "user_metadata": _json_map(user["raw_user_meta_data"]),
        "role": user["role"] or "",
        "aal": "aal1",
        "amr": amr,
        "session_id": str(session_id),
        "is_anonymous": bool(user["is_anonymous"]),
    }
    return jwt.encode(claims, secret, algorithm="HS256", headers={"typ": "JWT"}), expires_at


def user_json(user: asyncpg.Record) -> dict[str, Any]:
    """`models.User` as Auth marshals it: `omitempty` fields only when set, `identities` always
    (this stand-in keeps none: an empty list)."""
    body: dict[str, Any] = {
        "id": str(user["id"]),
        "aud": user["aud"] or "",
        "role": user["role"] or "",
        "email": user["email"] or "",
    }
    _put_time(body, "email_confirmed_at", user["email_confirmed_at"])
    _put_time(body, "invited_at", user["invited_at"])
    body["phone"] = user["phone"] or ""
    _put_time(body, "phone_confirmed_at", user["phone_confirmed_at"])
    _put_time(body, "confirmation_sent_at", user["confirmation_sent_at"])
    _put_time(body, "confirmed_at", user["confirmed_at"])
    _put_time(body, "recovery_sent_at", user["recovery_sent_at"])
    if user["email_change"]:
        body["new_email"] = user["email_change"]
    _put_time(body, "email_change_sent_at", user["email_change_sent_at"])
    if user["phone_change"]:
        body["new_phone"] = user["phone_change"]
    _put_time(body, "phone_change_sent_at", user["phone_change_sent_at"])
    _put_time(body, "reauthentication_sent_at", user["reauthentication_sent_at"])
    _put_time(body, "last_sign_in_at", user["last_sign_in_at"])
    body["app_metadata"] = _json_map(user["raw_app_meta_data"])
    body["user_metadata"] = _json_map(user["raw_user_meta_data"])
    body["identities"] = []
    body["created_at"] = go_time(user["created_at"])
    body["updated_at"] = go_time(user["updated_at"])
    _put_time(body, "banned_until", user["banned_until"])
    _put_time(body, "deleted_at", user["deleted_at"])
    body["is_anonymous"] = bool(user["is_anonymous"])
    return body


def go_time(value: datetime | None) -> str:
    """Go's RFC 3339 with nanoseconds (trailing zeros dropped), in UTC; the zero time for NULL,
    as a non-pointer `time.Time` column is marshalled."""
    if value is None:
        return "0001-01-01T00:00:00Z"
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    value = value.astimezone(UTC)
    text = value.strftime("%Y-%m-%dT%H:%M:%S")
    if value.microsecond:
        text += "." + f"{value.microsecond:06d}".rstrip("0")
    return text + "Z"


def _put_time(body: dict[str, Any], key: str, value: datetime | None) -> None:
    if value is not None:
        body[key] = go_time(value)


def _json_map(value: Any) -> dict[str, Any]:
    # asyncpg hands jsonb over as text
    if value is None:
        return {}
    parsed = json.loads(value) if isinstance(value, str) else value
    return parsed if isinstance(parsed, dict) else {}
