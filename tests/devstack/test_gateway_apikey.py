"""The API gateway's key check in front of the stand-ins: an `apikey` that is not the project's
anon or service_role key is refused with the platform gateway's 401 before PostgREST, Auth or
Realtime's REST API sees the request; the project's keys pass."""

from __future__ import annotations

import httpx
import jwt
import pytest

from devstack import auth
from devstack.config import LOCAL_JWT_SECRET
from tests.fixtures.devstack import ANON_KEY, SERVICE_ROLE_KEY

INVALID_API_KEY = {
    "message": "Invalid API key",
    "hint": "Double check your Supabase `anon` or `service_role` API key.",
}
# Signed with the project's secret, but not one of its keys
OTHER_JWT = jwt.encode({"role": "anon", "exp": 1983812996}, LOCAL_JWT_SECRET, algorithm="HS256")

ENDPOINTS = [
    ("POST", "/rest/v1/rpc/bridge_ready"),
    ("GET", "/rest/v1/conversations"),
    ("POST", "/auth/v1/token?grant_type=password"),
    ("GET", "/auth/v1/user"),
    ("POST", "/realtime/v1/api/broadcast"),
    ("POST", "/realtime/v1/api/broadcast/room/events/ping"),
]


def test_the_project_keys_are_the_well_known_local_ones() -> None:
    assert auth.project_keys(LOCAL_JWT_SECRET) == {ANON_KEY, SERVICE_ROLE_KEY}


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
@pytest.mark.parametrize("key", ["garbage", OTHER_JWT], ids=["garbage", "other-jwt"])
async def test_an_invalid_apikey_is_refused_with_401(
    devstack_url: str, method: str, path: str, key: str
) -> None:
    async with httpx.AsyncClient(base_url=devstack_url) as http:
        # even with a valid Authorization: the gateway checks the key first
        headers = {"apikey": key, "Authorization": f"Bearer {SERVICE_ROLE_KEY}"}
        response = await http.request(method, path, headers=headers, json={})
    assert response.status_code == 401
    assert response.json() == INVALID_API_KEY


async def test_the_key_may_come_in_the_query_string(devstack_url: str) -> None:
    # realtime-js' REST fallback sends the socket's query (apikey, vsn) along with its headers
    batch = {"messages": [{"topic": "room", "event": "ping", "payload": {}}]}
    path = "/realtime/v1/api/broadcast"
    async with httpx.AsyncClient(base_url=devstack_url) as http:
        refused = await http.get("/rest/v1/conversations", params={"apikey": "garbage"})
        allowed = await http.post(
            path, params={"apikey": ANON_KEY, "vsn": "2.0.0"}, headers={"apikey": ANON_KEY},
            json=batch,
        )  # fmt: skip
        header_first = await http.post(
            path, params={"apikey": "garbage"}, headers={"apikey": ANON_KEY}, json=batch
        )
    assert (refused.status_code, refused.json()) == (401, INVALID_API_KEY)
    assert allowed.status_code == 202
    assert header_first.status_code == 202


async def test_the_project_keys_pass(devstack_url: str) -> None:
    async with httpx.AsyncClient(base_url=devstack_url) as http:
        for key in (ANON_KEY, SERVICE_ROLE_KEY):
            response = await http.get(
                "/rest/v1/workspaces",
                params={"select": "id", "limit": "1"},
                headers={"apikey": key, "Authorization": f"Bearer {key}"},
            )
            assert response.status_code == 200, key
        # the health check and the WhatsApp stand-in are not behind the key check
        assert (await http.get("/health", headers={"apikey": "garbage"})).status_code == 200
