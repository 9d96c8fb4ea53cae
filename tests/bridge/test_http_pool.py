"""The API's httpx client over aiohttp: what supabase-py sends takes the short path and comes back
as the server answered it; anything else takes httpx's own path; transport failures become the
httpx errors postgrest-py and the intake understand."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import httpx
import pytest
from aiohttp import web
from postgrest.exceptions import APIError
from supabase import AsyncClientOptions, acreate_client

from bridge.http_pool import pooled_client
from bridge.settings import LOCAL_SERVICE_ROLE_KEY
from tests.fixtures.devstack import free_port


async def _echo(request: web.Request) -> web.Response:
    body = await request.read()
    answer = {
        "method": request.method,
        "query": request.query_string,
        "headers": {k.lower(): v for k, v in request.headers.items()},
        "body": body.decode(),
    }
    return web.json_response(answer, status=201, headers={"X-Peer": "echo"}, reason="Made")


async def _hang(request: web.Request) -> web.Response:
    await asyncio.sleep(5)
    return web.Response(text="late")


async def _hang_up(request: web.Request) -> web.StreamResponse:
    assert request.transport is not None
    request.transport.close()  # no answer at all: the server drops the connection
    await asyncio.sleep(0.1)
    return web.Response(text="never sent")


@pytest.fixture
async def peer() -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_route("*", "/echo", _echo)
    app.router.add_get("/hang", _hang)
    app.router.add_get("/hang-up", _hang_up)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    http = pooled_client(timeout=0.5, max_connections=4)
    try:
        yield http
    finally:
        await http.aclose()


async def test_a_plain_request_comes_back_as_the_server_answered(
    client: httpx.AsyncClient, peer: str
) -> None:
    client.headers["apikey"] = "k1"
    response = await client.request(
        "POST",
        f"{peer}/echo",
        content=b'{"a": 1}',
        params=httpx.QueryParams({"select": "*", "q": "año"}),
        headers=httpx.Headers({"Content-Type": "application/json", "Prefer": "x"}),
    )
    assert response.status_code == 201
    assert response.reason_phrase == "Made"
    assert response.headers["x-peer"] == "echo"
    assert response.request.method == "POST"
    assert str(response.request.url).startswith(f"{peer}/echo?")
    seen = response.json()
    assert seen["method"] == "POST"
    assert httpx.QueryParams(seen["query"]) == httpx.QueryParams({"select": "*", "q": "año"})
    assert seen["body"] == '{"a": 1}'
    # The client's own headers and the request's, the request's winning.
    assert seen["headers"]["apikey"] == "k1"
    assert seen["headers"]["prefer"] == "x"
    assert seen["headers"]["content-type"] == "application/json"
    assert seen["headers"]["accept-encoding"] == "identity"


async def test_each_response_names_the_url_its_request_went_to(
    client: httpx.AsyncClient, peer: str
) -> None:
    urls = [f"{peer}/echo", f"{peer}/echo?n=1", f"{peer}/echo", f"{peer}/echo?n=2"]
    for url in urls:
        response = await client.request("POST", url, content=b"{}")
        assert str(response.request.url) == url
        assert response.json()["query"] == url.partition("?")[2]


async def test_other_requests_take_httpx_own_path_over_the_same_pool(
    client: httpx.AsyncClient, peer: str
) -> None:
    response = await client.post(f"{peer}/echo", json={"b": 2}, timeout=2.0)
    assert response.status_code == 201
    assert json.loads(response.json()["body"]) == {"b": 2}
    # Cookies set on the client are sent, whichever shape the request has.
    client.cookies.set("c", "3")
    seen = (await client.request("GET", f"{peer}/echo")).json()
    assert seen["headers"]["cookie"] == "c=3"


async def test_a_slow_server_is_a_timeout(client: httpx.AsyncClient, peer: str) -> None:
    with pytest.raises(httpx.TimeoutException):
        await client.request("GET", f"{peer}/hang")


async def test_a_refused_connection_is_a_connect_error(client: httpx.AsyncClient) -> None:
    with pytest.raises(httpx.ConnectError):
        await client.request("GET", f"http://127.0.0.1:{free_port()}/x")


async def test_a_dropped_connection_is_a_protocol_error(
    client: httpx.AsyncClient, peer: str
) -> None:
    # postgrest-py retries idempotent requests on exactly this error.
    with pytest.raises(httpx.RemoteProtocolError):
        await client.request("GET", f"{peer}/hang-up")


async def test_supabase_rpc_through_the_client(
    devstack_url: str, client: httpx.AsyncClient
) -> None:
    supabase = await acreate_client(
        devstack_url,
        LOCAL_SERVICE_ROLE_KEY,
        options=AsyncClientOptions(httpx_client=client, auto_refresh_token=False),
    )
    assert (await supabase.rpc("bridge_ready").execute()).data is True
    with pytest.raises(APIError) as raised:
        await supabase.rpc("no_such_function_here", {"x": 1}).execute()
    assert raised.value.code == "PGRST202"
