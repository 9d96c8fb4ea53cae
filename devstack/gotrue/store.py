"""What Supabase Auth reads and writes in the `auth` schema, as its models do.

Users are found with `instance_id` = the nil uuid (Auth's only instance); a session is a row of
`auth.sessions` with its sign-in methods in `auth.mfa_amr_claims`; refresh tokens are Auth's
legacy ones, a row each in `auth.refresh_tokens`, each new token naming the one it replaced as
its `parent`.
"""

from __future__ import annotations

import base64
import os
import uuid
from dataclasses import dataclass
from datetime import datetime

import asyncpg

Connection = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy

NIL_INSTANCE = uuid.UUID(int=0)

_USER_COLUMNS = """
  u.id, u.aud, u.role, u.email, u.encrypted_password, u.email_confirmed_at, u.invited_at,
  u.phone, u.phone_confirmed_at, u.confirmation_token, u.confirmation_sent_at, u.confirmed_at,
  u.recovery_token, u.recovery_sent_at, u.email_change_token_current, u.email_change_token_new,
  u.email_change, u.email_change_sent_at, u.phone_change_token, u.phone_change,
  u.phone_change_sent_at, u.reauthentication_token, u.reauthentication_sent_at,
  u.last_sign_in_at, u.raw_app_meta_data, u.raw_user_meta_data, u.created_at, u.updated_at,
  u.banned_until, u.deleted_at, u.is_anonymous,
  (u.banned_until is not null and u.banned_until > now()) as banned"""

# Columns Auth scans into Go strings: a NULL in any of them fails the scan (a 500).
NOT_NULL_STRINGS = (
    "confirmation_token",
    "recovery_token",
    "email_change_token_current",
    "email_change_token_new",
    "email_change",
    "phone_change_token",
    "phone_change",
    "reauthentication_token",
)


@dataclass(frozen=True)
class Session:
    id: uuid.UUID
    user_id: uuid.UUID
    created_at: datetime


@dataclass(frozen=True)
class RefreshToken:
    id: int
    token: str
    revoked: bool
    updated_at: datetime
    session_id: uuid.UUID | None
    user_id: uuid.UUID


async def user_by_email(conn: Connection, email: str, aud: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"select {_USER_COLUMNS} from auth.users u where u.instance_id = $1"
        " and lower(u.email) = lower($2) and u.aud = $3 and u.is_sso_user = false limit 1",
        NIL_INSTANCE,
        email,
        aud,
    )


async def user_by_phone(conn: Connection, phone: str, aud: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"select {_USER_COLUMNS} from auth.users u where u.instance_id = $1"
        " and u.phone = $2 and u.aud = $3 and u.is_sso_user = false limit 1",
        NIL_INSTANCE,
        phone,
        aud,
    )


async def user_by_id(conn: Connection, user_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"select {_USER_COLUMNS} from auth.users u where u.instance_id = $1 and u.id = $2",
        NIL_INSTANCE,
        user_id,
    )


async def session_by_id(conn: Connection, session_id: uuid.UUID) -> Session | None:
    row = await conn.fetchrow(
        "select id, user_id, created_at from auth.sessions where id = $1", session_id
    )
    return None if row is None else Session(row["id"], row["user_id"], row["created_at"])


async def start_session(
    conn: Connection, user_id: uuid.UUID, method: str, user_agent: str | None, ip: str | None
) -> tuple[Session, str]:
    """A new session with its first refresh token and its sign-in method (in the caller's
    transaction); also stamps the user's last sign-in."""
    session_id = uuid.uuid4()
    created_at = await conn.fetchval(
        "insert into auth.sessions (id, user_id, created_at, updated_at, aal, user_agent, ip)"
        " values ($1, $2, now(), now(), 'aal1', $3, $4::text::inet) returning created_at",
        session_id,
        user_id,
        user_agent,
        ip,
    )
    await conn.execute(
        "insert into auth.mfa_amr_claims (id, session_id, created_at, updated_at,"
        " authentication_method) values ($1, $2, now(), now(), $3)"
        " on conflict (session_id, authentication_method) do update set updated_at = now()",
        uuid.uuid4(),
        session_id,
        method,
    )
    await conn.execute("update auth.users set last_sign_in_at = now() where id = $1", user_id)
    token = await _insert_refresh_token(conn, user_id, session_id, parent=None)
    return Session(session_id, user_id, created_at), token


async def amr(conn: Connection, session_id: uuid.UUID) -> list[dict[str, object]]:
    """The session's sign-in methods, most recent first, as the `amr` claim lists them."""
    rows = await conn.fetch(
        "select authentication_method, extract(epoch from updated_at)::bigint as at"
        " from auth.mfa_amr_claims where session_id = $1 order by updated_at desc",
        session_id,
    )
    return [{"method": r["authentication_method"], "timestamp": int(r["at"])} for r in rows]


async def refresh_token(conn: Connection, token: str, *, for_update: bool) -> RefreshToken | None:
    lock = " for update" if for_update else ""
    row = await conn.fetchrow(
        "select id, token, coalesce(revoked, false) as revoked, updated_at, session_id,"
        f" user_id from auth.refresh_tokens where instance_id = $1 and token = $2{lock}",
        NIL_INSTANCE,
        token,
    )
    if row is None:
        return None
    try:
        user_id = uuid.UUID(str(row["user_id"]))
    except ValueError:
        return None
    return RefreshToken(
        id=row["id"],
        token=row["token"],
        revoked=row["revoked"],
        updated_at=row["updated_at"],
        session_id=row["session_id"],
        user_id=user_id,
    )


async def active_child(conn: Connection, session_id: uuid.UUID) -> asyncpg.Record | None:
    """The session's newest token that is not revoked (Auth's "currently active" token)."""
    return await conn.fetchrow(
        "select token, parent from auth.refresh_tokens"
        " where session_id = $1 and revoked = false order by id desc limit 1",
        session_id,
    )


async def swap(conn: Connection, old: RefreshToken) -> str:
    """Revokes `old` and issues its successor in the same session."""
    await conn.execute(
        "update auth.refresh_tokens set revoked = true, updated_at = now() where id = $1", old.id
    )
    assert old.session_id is not None
    await conn.execute(
        "update auth.sessions set refreshed_at = (now() at time zone 'utc'), updated_at = now()"
        " where id = $1",
        old.session_id,
    )
    return await _insert_refresh_token(conn, old.user_id, old.session_id, parent=old.token)


async def revoke_session_tokens(conn: Connection, session_id: uuid.UUID) -> None:
    """Auth's answer to a reused token: the whole family goes."""
    await conn.execute(
        "update auth.refresh_tokens set revoked = true, updated_at = now()"
        " where session_id = $1 and revoked = false",
        session_id,
    )


async def end_sessions(
    conn: Connection, user_id: uuid.UUID, session_id: uuid.UUID | None, scope: str
) -> None:
    """Logout: `global` ends every session of the user, `local` this one, `others` the rest."""
    if scope == "local" and session_id is not None:
        await conn.execute("delete from auth.sessions where id = $1", session_id)
    elif scope == "others" and session_id is not None:
        await conn.execute(
            "delete from auth.sessions where user_id = $1 and id <> $2", user_id, session_id
        )
    else:
        await conn.execute("delete from auth.sessions where user_id = $1", user_id)


async def _insert_refresh_token(
    conn: Connection, user_id: uuid.UUID, session_id: uuid.UUID, *, parent: str | None
) -> str:
    token = _secure_alphanumeric()
    await conn.execute(
        "insert into auth.refresh_tokens (instance_id, token, user_id, revoked, created_at,"
        " updated_at, parent, session_id) values ($1, $2, $3, false, now(), now(), $4, $5)",
        NIL_INSTANCE,
        token,
        str(user_id),
        parent,
        session_id,
    )
    return token


def _secure_alphanumeric(length: int = 12) -> str:
    """Auth's `crypto.SecureAlphanumeric(12)`: random bytes in lower-case base32."""
    raw = os.urandom((length * 5 + 7) // 8)
    return base64.b32encode(raw).decode().rstrip("=").lower()[:length]
