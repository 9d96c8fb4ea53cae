"""The Auth (GoTrue) stand-in under /auth/v1: password sign-in as the seed's members, the access
token's claims, the signed-in user, refresh-token rotation as Auth keeps it in
`auth.refresh_tokens`, logout, and Auth's errors in both of its shapes."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
import jwt
import pytest
from supabase import AsyncClientOptions, acreate_client
from supabase_auth.errors import AuthApiError

from devstack.config import LOCAL_JWT_SECRET
from devstack.workspaces import create_user
from tests.devstack.inbox_data import ANA, ANA_ID, DEMO_PASSWORD
from tests.fixtures.devstack import ANON_KEY, SERVICE_ROLE_KEY

API_2024 = {"X-Supabase-Api-Version": "2024-01-01"}


async def password_grant(
    url: str, email: str, password: str = DEMO_PASSWORD, headers: dict[str, str] | None = None
) -> httpx.Response:
    async with httpx.AsyncClient(base_url=url, headers={"apikey": ANON_KEY}) as http:
        return await http.post(
            "/auth/v1/token",
            params={"grant_type": "password"},
            json={"email": email, "password": password},
            headers=headers,
        )


async def refresh_grant(url: str, refresh_token: str | None) -> httpx.Response:
    body = {} if refresh_token is None else {"refresh_token": refresh_token}
    async with httpx.AsyncClient(base_url=url, headers={"apikey": ANON_KEY}) as http:
        return await http.post("/auth/v1/token", params={"grant_type": "refresh_token"}, json=body)


async def get_user(url: str, token: str | None) -> httpx.Response:
    headers = {"apikey": ANON_KEY}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    async with httpx.AsyncClient(base_url=url, headers=headers) as http:
        return await http.get("/auth/v1/user")


async def test_a_seeded_member_signs_in_with_the_demo_password(
    devstack_url: str, db: asyncpg.Pool
) -> None:
    response = await password_grant(devstack_url, ANA.upper())  # emails match case-insensitively
    assert response.status_code == 200, response.text
    body = response.json()
    assert list(body) == [
        "access_token", "token_type", "expires_in", "expires_at", "refresh_token", "user"
    ]  # fmt: skip
    assert (body["token_type"], body["expires_in"]) == ("bearer", 3600)
    user = body["user"]
    assert (user["id"], user["email"], user["aud"], user["role"]) == (
        str(ANA_ID), ANA, "authenticated", "authenticated"
    )  # fmt: skip
    assert user["user_metadata"] == {"full_name": "Ana Agent"}
    assert user["app_metadata"] == {"provider": "email", "providers": ["email"]}
    assert user["identities"] == []
    assert user["is_anonymous"] is False
    assert user["email_confirmed_at"].endswith("Z")
    assert "last_sign_in_at" in user

    header = jwt.get_unverified_header(body["access_token"])
    claims = jwt.decode(
        body["access_token"], LOCAL_JWT_SECRET, algorithms=["HS256"], audience="authenticated"
    )
    assert header == {"alg": "HS256", "typ": "JWT"}
    assert list(claims) == [
        "iss", "sub", "aud", "exp", "iat", "email", "phone", "app_metadata", "user_metadata",
        "role", "aal", "amr", "session_id", "is_anonymous",
    ]  # fmt: skip
    assert claims["iss"] == f"{devstack_url}/auth/v1"
    assert (claims["sub"], claims["aud"], claims["role"], claims["email"]) == (
        str(ANA_ID), "authenticated", "authenticated", ANA
    )  # fmt: skip
    assert claims["exp"] - claims["iat"] == 3600
    assert claims["exp"] == body["expires_at"]
    assert (claims["aal"], claims["phone"], claims["is_anonymous"]) == ("aal1", "", False)
    assert [entry["method"] for entry in claims["amr"]] == ["password"]
    assert abs(claims["amr"][0]["timestamp"] - time.time()) < 60
    stored = await db.fetchrow(
        "select s.user_id, r.revoked, r.parent from auth.sessions s"
        " join auth.refresh_tokens r on r.session_id = s.id"
        " where s.id = $1 and r.token = $2",
        uuid.UUID(claims["session_id"]),
        body["refresh_token"],
    )
    assert stored is not None
    assert tuple(stored) == (ANA_ID, False, None)


@pytest.mark.parametrize(
    ("email", "password"),
    [(ANA, "wrong password"), ("nobody@demo-store.test", DEMO_PASSWORD), (ANA, "")],
)
async def test_bad_credentials_get_auths_error_in_both_shapes(
    devstack_url: str, email: str, password: str
) -> None:
    initial = await password_grant(devstack_url, email, password)
    versioned = await password_grant(devstack_url, email, password, headers=API_2024)
    assert initial.status_code == versioned.status_code == 400
    assert initial.json() == {
        "code": 400,
        "error_code": "invalid_credentials",
        "msg": "Invalid login credentials",
    }
    assert initial.headers["x-sb-error-code"] == "invalid_credentials"
    assert versioned.json() == {
        "code": "invalid_credentials",
        "message": "Invalid login credentials",
    }
    assert versioned.headers["x-supabase-api-version"] == "2024-01-01"


async def test_users_auth_cannot_sign_in(devstack_url: str, db: asyncpg.Pool) -> None:
    seeded_hash = await db.fetchval(
        "select encrypted_password from auth.users where id = $1", ANA_ID
    )
    async with db.acquire() as conn:
        no_password = await create_user(conn)  # as the tests' factory makes users
    unconfirmed, null_tokens = uuid.uuid4(), uuid.uuid4()
    insert = (
        "insert into auth.users (instance_id, id, aud, role, email, encrypted_password,"
        " email_confirmed_at, confirmation_token, recovery_token, email_change_token_new,"
        " email_change) values ('00000000-0000-0000-0000-000000000000', $1, 'authenticated',"
        " 'authenticated', $2, $3, $4, $5, $5, $5, $5)"
    )
    await db.execute(insert, unconfirmed, f"{unconfirmed}@x.test", seeded_hash, None, "")
    await db.execute(
        insert, null_tokens, f"{null_tokens}@x.test", seeded_hash, datetime.now(UTC), None
    )
    refused = await password_grant(devstack_url, f"{no_password.hex}@example.test")
    assert refused.json()["error_code"] == "invalid_credentials"
    waiting = await password_grant(devstack_url, f"{unconfirmed}@x.test")
    assert waiting.status_code == 400
    assert waiting.json()["error_code"] == "email_not_confirmed"
    assert waiting.json()["msg"] == "Email not confirmed"
    # Auth scans its token columns into strings: NULL there is its 500
    broken = await password_grant(devstack_url, f"{null_tokens}@x.test")
    assert broken.status_code == 500
    assert broken.json()["msg"] == "Database error querying schema"


async def test_the_signed_in_user_and_the_errors_of_user(devstack_url: str) -> None:
    token = (await password_grant(devstack_url, ANA)).json()["access_token"]
    me = await get_user(devstack_url, token)
    assert me.status_code == 200
    assert (me.json()["id"], me.json()["email"]) == (str(ANA_ID), ANA)

    cases: list[tuple[str | None, int, str]] = [
        (None, 401, "no_authorization"),
        (ANON_KEY, 403, "bad_jwt"),  # no sub claim
        (jwt.encode({"sub": str(ANA_ID)}, "another-secret-of-32-bytes-at-least!"), 403, "bad_jwt"),
        (_token(sub=str(uuid.uuid4())), 403, "user_not_found"),
        (_token(sub=str(ANA_ID), session_id=str(uuid.uuid4())), 403, "session_not_found"),
    ]
    for bearer, status, code in cases:
        response = await get_user(devstack_url, bearer)
        assert (response.status_code, response.json()["error_code"]) == (status, code), bearer


def _token(**claims: Any) -> str:
    now = int(time.time())
    return jwt.encode(
        {"aud": "authenticated", "role": "authenticated", "iat": now, "exp": now + 600, **claims},
        LOCAL_JWT_SECRET,
        algorithm="HS256",
    )


async def test_refresh_tokens_rotate_as_auth_rotates_them(
    devstack_url: str, db: asyncpg.Pool
) -> None:
    first = (await password_grant(devstack_url, ANA)).json()
    second_response = await refresh_grant(devstack_url, first["refresh_token"])
    assert second_response.status_code == 200, second_response.text
    second = second_response.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert second["user"]["id"] == str(ANA_ID)
    session_id = jwt.decode(second["access_token"], options={"verify_signature": False})[
        "session_id"
    ]
    assert (
        session_id
        == jwt.decode(first["access_token"], options={"verify_signature": False})["session_id"]
    )
    rows = await db.fetch(
        "select token, revoked, parent from auth.refresh_tokens where session_id = $1 order by id",
        uuid.UUID(session_id),
    )
    assert [tuple(r) for r in rows] == [
        (first["refresh_token"], True, None),
        (second["refresh_token"], False, first["refresh_token"]),
    ]

    # A client that lost the answer retries with the old token: it gets the active one back.
    retried = await refresh_grant(devstack_url, first["refresh_token"])
    assert retried.json()["refresh_token"] == second["refresh_token"]

    # Once the active token moved on and the old one is past the reuse interval, the old one
    # is refused and the session's tokens are revoked.
    third = (await refresh_grant(devstack_url, second["refresh_token"])).json()
    await db.execute(
        "update auth.refresh_tokens set updated_at = now() - interval '1 minute' where token = $1",
        first["refresh_token"],
    )
    reused = await refresh_grant(devstack_url, first["refresh_token"])
    assert reused.status_code == 400
    assert reused.json() == {
        "code": 400,
        "error_code": "refresh_token_already_used",
        "msg": "Invalid Refresh Token: Already Used",
    }
    revoked = await db.fetchval(
        "select revoked from auth.refresh_tokens where token = $1", third["refresh_token"]
    )
    assert revoked is True


async def test_refresh_errors(devstack_url: str) -> None:
    missing = await refresh_grant(devstack_url, None)
    assert (missing.status_code, missing.json()) == (
        400, {"error": "invalid_request", "error_description": "refresh_token required"}
    )  # fmt: skip
    unknown = await refresh_grant(devstack_url, "abcdefghijkl")
    assert (unknown.status_code, unknown.json()["error_code"]) == (400, "refresh_token_not_found")
    async with httpx.AsyncClient(base_url=devstack_url, headers={"apikey": ANON_KEY}) as http:
        grant = await http.post("/auth/v1/token", params={"grant_type": "magic"}, json={})
        garbled = await http.post(
            "/auth/v1/token", params={"grant_type": "password"}, content=b"{not json"
        )
    assert grant.json() == {
        "code": 400, "error_code": "invalid_credentials", "msg": "unsupported_grant_type"
    }  # fmt: skip
    assert (garbled.status_code, garbled.json()["error_code"]) == (400, "bad_json")


async def test_logout_ends_the_session(devstack_url: str, db: asyncpg.Pool) -> None:
    session = (await password_grant(devstack_url, ANA)).json()
    async with httpx.AsyncClient(base_url=devstack_url, headers={"apikey": ANON_KEY}) as http:
        response = await http.post(
            "/auth/v1/logout",
            params={"scope": "local"},
            headers={"Authorization": f"Bearer {session['access_token']}"},
        )
    assert response.status_code == 204
    session_id = jwt.decode(session["access_token"], options={"verify_signature": False})[
        "session_id"
    ]
    assert (
        await db.fetchval("select count(*) from auth.sessions where id = $1::uuid", session_id) == 0
    )
    gone = await refresh_grant(devstack_url, session["refresh_token"])
    assert gone.json()["error_code"] == "refresh_token_not_found"
    me = await get_user(devstack_url, session["access_token"])
    assert (me.status_code, me.json()["error_code"]) == (403, "session_not_found")


async def test_the_service_role_reads_a_user_through_supabase_pys_admin_api(
    devstack_url: str,
) -> None:
    async with httpx.AsyncClient(timeout=10) as http:
        admin = await acreate_client(
            devstack_url,
            SERVICE_ROLE_KEY,
            options=AsyncClientOptions(
                auto_refresh_token=False, persist_session=False, httpx_client=http
            ),
        )
        found = await admin.auth.admin.get_user_by_id(str(ANA_ID))
        with pytest.raises(AuthApiError) as missing:
            await admin.auth.admin.get_user_by_id(str(uuid.uuid4()))
    assert (found.user.id, found.user.email) == (str(ANA_ID), ANA)
    assert found.user.user_metadata["full_name"]
    assert (missing.value.status, missing.value.code) == (404, "user_not_found")

    member = (await password_grant(devstack_url, ANA)).json()["access_token"]
    async with httpx.AsyncClient(base_url=devstack_url, headers={"apikey": ANON_KEY}) as http:
        for token, status, code in (
            (ANON_KEY, 403, "not_admin"),
            (member, 403, "not_admin"),
            (None, 401, "no_authorization"),
        ):
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            refused = await http.get(f"/auth/v1/admin/users/{ANA_ID}", headers=headers)
            assert (refused.status_code, refused.headers["x-sb-error-code"]) == (status, code)
        not_uuid = await http.get(
            "/auth/v1/admin/users/ana",
            headers={"Authorization": f"Bearer {SERVICE_ROLE_KEY}", **API_2024},
        )
    assert not_uuid.status_code == 400
    assert not_uuid.json() == {"code": "validation_failed", "message": "user_id must be an UUID"}
