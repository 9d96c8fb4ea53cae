"""What the PostgREST RPC stand-in answers to bad input, over raw HTTP: PostgREST's statuses and
error JSON, never a stack trace, and the server keeps serving afterwards."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import jwt
import pytest

from devstack.config import LOCAL_JWT_SECRET
from tests.fixtures.devstack import ANON_KEY, SERVICE_ROLE_KEY

SCHEMA_SQL = """
create function public.devstack_test_sum(a integer, b integer default 0) returns integer
language sql immutable as 'select a + b';
create function public.devstack_test_twin(x integer) returns text
language sql immutable as $$ select 'integer' $$;
create function public.devstack_test_twin(x text) returns text
language sql immutable as $$ select 'text' $$;
create function public.devstack_test_numbers() returns setof integer
language sql immutable as 'values (1), (2)';
create table public.devstack_test_bulk (n integer not null);
grant all on public.devstack_test_bulk to anon, authenticated, service_role;
create function public.devstack_test_bulk_add(n integer) returns void
language sql as 'insert into public.devstack_test_bulk values (n)';
"""

TEARDOWN_SQL = """
drop function if exists public.devstack_test_sum, public.devstack_test_numbers,
  public.devstack_test_bulk_add;
drop function if exists public.devstack_test_twin(integer), public.devstack_test_twin(text);
drop table if exists public.devstack_test_bulk;
"""


@pytest.fixture(scope="module", autouse=True)
async def rpc_functions(db: asyncpg.Pool) -> AsyncIterator[None]:
    await db.execute(SCHEMA_SQL)
    yield
    await db.execute(TEARDOWN_SQL)


@pytest.fixture
async def http(devstack_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=f"{devstack_url}/rest/v1", timeout=30) as client:
        yield client


def signed(claims: dict[str, Any], secret: str = LOCAL_JWT_SECRET) -> str:
    return jwt.encode(claims, secret, algorithm="HS256")


def unsigned(claims: dict[str, Any]) -> str:
    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


def bearer(token: str) -> dict[str, str]:
    return {"apikey": ANON_KEY, "Authorization": f"Bearer {token}"}


JSON = {"Content-Type": "application/json"}
NOW = int(time.time())

# (method, function, headers, body, status, code, message)
CASES = [
    pytest.param(
        "POST", "devstack_test_sum", JSON, b'{"a": 1,', 400, "PGRST102", "Empty or invalid json",
        id="malformed-json",
    ),
    pytest.param(
        "POST", "devstack_test_sum", JSON, b"\xff\xfe{}", 400, "PGRST102", "Empty or invalid json",
        id="not-utf8",
    ),
    pytest.param(
        "POST", "devstack_test_sum", JSON, b"[1, 2]", 400, "PGRST102", "All object keys must match",
        id="array-of-scalars",
    ),
    pytest.param(
        "POST", "devstack_test_sum", JSON, b'[{"a": 1}, {"b": 2}]', 400, "PGRST102",
        "All object keys must match", id="array-of-mixed-objects",
    ),
    pytest.param(
        "POST", "devstack_test_sum", JSON, b'"a string"', 404, "PGRST202",
        "Could not find the function public.devstack_test_sum without parameters in the schema "
        "cache", id="scalar-body-carries-no-arguments",
    ),
    pytest.param(
        "POST", "devstack_test_sum", JSON, b'{"a": "one"}', 400, "22P02",
        'invalid input syntax for type integer: "one"', id="wrong-type-text",
    ),
    pytest.param(
        "POST", "devstack_test_sum", JSON, b'{"a": 1.5}', 400, "22P02",
        'invalid input syntax for type integer: "1.5"', id="wrong-type-fraction",
    ),
    pytest.param(
        "POST", "devstack_test_sum", JSON, b'{"a": {"nested": true}}', 400, "22P02",
        'invalid input syntax for type integer: "{"nested": true}"', id="wrong-type-object",
    ),
    pytest.param(
        "POST", "devstack_test_sum", JSON, b'{"a": 99999999999}', 400, "22003",
        'value "99999999999" is out of range for type integer', id="out-of-range",
    ),
    pytest.param(
        "POST", "devstack_test_sum", JSON, b'{"b": 1}', 404, "PGRST202",
        "Could not find the function public.devstack_test_sum(b) in the schema cache",
        id="missing-required-argument",
    ),
    pytest.param(
        "POST", "devstack_test_sum", JSON, b'{"a": 1, "c": 2}', 404, "PGRST202",
        "Could not find the function public.devstack_test_sum(a, c) in the schema cache",
        id="unknown-argument",
    ),
    pytest.param(
        "POST", "devstack_test_twin", JSON, b'{"x": 1}', 300, "PGRST203",
        "Could not choose the best candidate function between: "
        "public.devstack_test_twin(x => integer), public.devstack_test_twin(x => text)",
        id="ambiguous-overloads",
    ),
    pytest.param(
        "POST", "devstack_test_sum", {**JSON, **bearer("not-a-jwt")}, b'{"a": 1}', 401,
        "PGRST301", "Expected 3 parts in JWT; got 1", id="malformed-jwt",
    ),
    pytest.param(
        "POST", "devstack_test_sum",
        {**JSON, **bearer(signed({"role": "service_role"}, "another-secret-of-at-least-32-chars"))},
        b'{"a": 1}', 401, "PGRST301", "No suitable key or wrong key type", id="forged-jwt",
    ),
    pytest.param(
        "POST", "devstack_test_sum", {**JSON, **bearer(unsigned({"role": "service_role"}))},
        b'{"a": 1}', 401, "PGRST301", "Wrong or unsupported encoding algorithm",
        id="unsigned-jwt",
    ),
    pytest.param(
        "POST", "devstack_test_sum", {**JSON, **bearer(signed({"role": "anon", "exp": NOW - 60}))},
        b'{"a": 1}', 401, "PGRST303", "JWT expired", id="expired-jwt",
    ),
    pytest.param(
        "POST", "devstack_test_sum", {**JSON, **bearer(signed({"role": "nobody"}))}, b'{"a": 1}',
        401, "22023", 'role "nobody" does not exist', id="unknown-role",
    ),
    pytest.param(
        "POST", "devstack_test_sum", {**JSON, **bearer(signed({"role": "postgres"}))},
        b'{"a": 1}', 403, "42501", 'permission denied to set role "postgres"',
        id="role-not-granted-to-authenticator",
    ),
    pytest.param(
        "POST", "devstack_test_sum", {**JSON, "Content-Profile": "private"}, b'{"a": 1}', 406,
        "PGRST106", "Invalid schema: private", id="unknown-schema-profile",
    ),
    pytest.param(
        "POST", "devstack_test_sum", {"Content-Type": "text/csv"}, b"a\n1", 400, "PGRST102",
        "Content-Type not acceptable: text/csv", id="unsupported-content-type",
    ),
    pytest.param(
        "POST", "devstack_test_numbers", {**JSON, "Accept": "application/vnd.pgrst.object+json"},
        b"{}", 406, "PGRST116", "Cannot coerce the result to a single JSON object",
        id="single-object-of-two-rows",
    ),
    pytest.param(
        "POST", "devstack_test_sum", {**JSON, "Accept": "text/html"}, b'{"a": 1}', 406,
        "PGRST107", "None of these media types are available: text/html", id="unacceptable",
    ),
    pytest.param(
        "DELETE", "devstack_test_sum", {}, b"", 405, "PGRST101",
        "Cannot use the DELETE method on RPC", id="unsupported-method",
    ),
    pytest.param(
        "POST", "devstack_test_numbers?select=n", JSON, b"{}", 400, "PGRST127",
        "Feature not implemented", id="select-on-result",
    ),
    pytest.param(
        "GET", "devstack_test_numbers?devstack_test_numbers=gt.1", {}, b"", 400, "PGRST127",
        "Feature not implemented", id="filter-on-result",
    ),
]  # fmt: skip


@pytest.mark.parametrize(
    ("method", "function", "headers", "body", "status", "code", "message"), CASES
)
async def test_bad_input_gets_postgrest_errors(
    http: httpx.AsyncClient,
    method: str,
    function: str,
    headers: dict[str, str],
    body: bytes,
    status: int,
    code: str,
    message: str,
) -> None:
    response = await http.request(method, f"/rpc/{function}", headers=headers, content=body)

    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json; charset=utf-8"
    assert response.headers["proxy-status"] == f"PostgREST; error={code}"
    error = response.json()
    assert set(error) == {"code", "message", "details", "hint"}
    assert (error["code"], error["message"]) == (code, message)
    if status == 401:
        assert response.headers["www-authenticate"].startswith("Bearer")
    # ... and the next request is served as usual.
    after = await http.post("/rpc/devstack_test_sum", json={"a": 40, "b": 2})
    assert (after.status_code, after.json()) == (200, 42)


async def test_jwt_errors_describe_the_token_problem_in_www_authenticate(
    http: httpx.AsyncClient,
) -> None:
    expired = signed({"role": "anon", "exp": NOW - 60})
    response = await http.post("/rpc/devstack_test_sum", json={"a": 1}, headers=bearer(expired))
    assert response.headers["www-authenticate"] == (
        'Bearer error="invalid_token", error_description="JWT expired"'
    )


async def test_clock_skew_of_thirty_seconds_is_tolerated(http: httpx.AsyncClient) -> None:
    just_expired = signed({"role": "anon", "exp": int(time.time()) - 10})
    response = await http.post(
        "/rpc/devstack_test_sum", json={"a": 1}, headers=bearer(just_expired)
    )
    assert response.status_code == 200


async def test_no_authorization_means_the_anonymous_role(http: httpx.AsyncClient) -> None:
    response = await http.post("/rpc/devstack_test_sum", json={"a": 1})
    assert (response.status_code, response.json()) == (200, 1)


async def test_a_missing_argument_hints_at_the_real_signature(http: httpx.AsyncClient) -> None:
    response = await http.post("/rpc/devstack_test_sum", json={"b": 1})
    assert response.json() == {
        "code": "PGRST202",
        "message": "Could not find the function public.devstack_test_sum(b) in the schema cache",
        "details": "Searched for the function public.devstack_test_sum with parameter b or with a "
        "single unnamed json/jsonb parameter, but no matches were found in the schema cache.",
        "hint": "Perhaps you meant to call the function public.devstack_test_sum(a, b)",
    }


async def test_a_misspelt_function_hints_at_the_right_name(http: httpx.AsyncClient) -> None:
    response = await http.post("/rpc/devstack_test_summ", json={"a": 1})
    assert (
        response.json()["hint"] == "Perhaps you meant to call the function public.devstack_test_sum"
    )


async def test_an_array_of_objects_calls_the_function_once_per_element(
    http: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    response = await http.post("/rpc/devstack_test_bulk_add", json=[{"n": 1}, {"n": 2}, {"n": 3}])
    assert response.status_code == 204
    assert await db.fetchval("select sum(n) from devstack_test_bulk") == 6


async def test_a_huge_body_is_refused_with_413(http: httpx.AsyncClient) -> None:
    huge = b'{"a": "' + b"x" * (11 * 1024 * 1024) + b'"}'
    response = await http.post("/rpc/devstack_test_sum", content=huge, headers=JSON)
    assert response.status_code == 413
    assert response.json()["code"] == "413"
    after = await http.post("/rpc/devstack_test_sum", json={"a": 1})
    assert after.status_code == 200


async def test_other_postgrest_paths_say_they_are_not_served(http: httpx.AsyncClient) -> None:
    # the OpenAPI root, deeper paths, and table writes other than PATCH
    for method, path in (("GET", "/"), ("GET", "/a/b"), ("POST", "/devstack_test_bulk")):
        response = await http.request(method, path, headers=bearer(SERVICE_ROLE_KEY), json={})
        assert response.status_code == 400, (method, path)
        assert response.json()["code"] == "PGRST127"
