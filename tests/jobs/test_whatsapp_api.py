"""The WhatsApp client against the Cloud API stand-in: every failure lands in the class that tells
the sender what it may do (retry, never re-send, give up). And against a listener standing for a
tenant's server: a channel's URL reaches only endpoints the operator allowed, the default token
only WHATSAPP_API_BASE_URL, and what a server answers is never kept raw."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from pydantic import SecretStr

from bridge.http_pool import pooled_session
from bridge.settings import Settings
from jobs.whatsapp_api import (
    Ambiguous,
    Channel,
    Refused,
    Rejected,
    SendError,
    SendPolicy,
    Throttled,
    WhatsAppClient,
    WindowClosed,
    parse_base_url,
    parse_base_urls,
)
from tests.fixtures.devstack import free_port
from tests.fixtures.worker import WhatsAppRecorder
from tests.jobs.listener import Listener, listening

DEFAULT_TOKEN = "the-operator-default-token"


def _policy(devstack_url: str, *extra: str) -> SendPolicy:
    return SendPolicy(
        default_base=parse_base_url(f"{devstack_url}/whatsapp/v21.0"),
        allowed=parse_base_urls(
            " ".join(
                [f"{devstack_url}/whatsapp/v21.0", f"{devstack_url}/whatsapp/360dialog", *extra]
            )
        ),
        default_token=DEFAULT_TOKEN,
    )


@asynccontextmanager
async def _client(policy: SendPolicy) -> AsyncIterator[WhatsAppClient]:
    session = pooled_session(timeout=1.0, max_connections=4)
    try:
        yield WhatsAppClient(session, policy)
    finally:
        await session.close()


@pytest.fixture
async def client(devstack_url: str) -> AsyncIterator[WhatsAppClient]:
    async with _client(_policy(devstack_url)) as c:
        yield c


@pytest.fixture
async def listener() -> AsyncIterator[Listener]:
    async with listening() as server:
        yield server


@pytest.fixture
async def recorder(devstack_url: str) -> AsyncIterator[WhatsAppRecorder]:
    rec = WhatsAppRecorder(devstack_url)
    try:
        yield rec
    finally:
        await rec.aclose()


def _meta(devstack_url: str) -> Channel:
    return Channel("meta", "1000000000000001", f"{devstack_url}/whatsapp/v21.0", "token")


def _to() -> str:
    return f"57{uuid.uuid4().int % 10**10:010d}"


async def test_a_sent_text_returns_its_wamid_and_reaches_the_api(
    client: WhatsAppClient, recorder: WhatsAppRecorder, devstack_url: str
) -> None:
    to = _to()
    wamid = await client.send_text(_meta(devstack_url), to, "hola 👋")
    assert wamid.startswith("wamid.")
    [sent] = await recorder.sends(to)
    assert sent["body"]["text"]["body"] == "hola 👋"
    assert sent["response"]["status"] == 200


async def test_360dialog_sends_with_its_key_and_without_a_number_in_the_path(
    client: WhatsAppClient, recorder: WhatsAppRecorder, devstack_url: str
) -> None:
    to = _to()
    channel = Channel("360dialog", "1000000000000002", f"{devstack_url}/whatsapp/360dialog", "k")
    assert (await client.send_text(channel, to, "hola")).startswith("wamid.")
    [sent] = await recorder.sends(to)
    assert sent["response"]["status"] == 200


@pytest.mark.parametrize(
    ("fault", "expected", "code"),
    [
        ({"kind": "graph_error", "code": 131056}, Throttled, 131056),
        ({"kind": "graph_error", "code": 130429}, Throttled, 130429),
        ({"kind": "graph_error", "code": 131047}, WindowClosed, 131047),
        ({"kind": "graph_error", "code": 100}, Rejected, 100),
        ({"kind": "http_error", "status": 500}, Ambiguous, None),
        ({"kind": "http_error", "status": 502}, Ambiguous, None),
    ],
)
async def test_api_failures_are_classified(
    client: WhatsAppClient,
    recorder: WhatsAppRecorder,
    devstack_url: str,
    fault: dict[str, object],
    expected: type[SendError],
    code: int | None,
) -> None:
    to = _to()
    await recorder.fault(**fault, to=to)
    with pytest.raises(expected) as raised:
        await client.send_text(_meta(devstack_url), to, "hola")
    assert type(raised.value) is expected
    assert raised.value.code == code


async def test_no_answer_in_time_is_ambiguous(
    client: WhatsAppClient, recorder: WhatsAppRecorder, devstack_url: str
) -> None:
    to = _to()
    # The stand-in sends the message but answers after the client gave up: it may be out.
    await recorder.fault(kind="timeout", seconds=3, then="answer", to=to)
    with pytest.raises(Ambiguous, match="timeout"):
        await client.send_text(_meta(devstack_url), to, "hola")


async def test_an_api_that_cannot_be_reached_is_a_rejection(devstack_url: str) -> None:
    # Nothing reached a server: the message is certainly not out.
    unreachable = f"http://127.0.0.1:{free_port()}/v21.0"
    channel = Channel("meta", "1", unreachable, "token")
    async with _client(_policy(devstack_url, unreachable)) as client:
        with pytest.raises(Rejected, match="cannot connect") as raised:
            await client.send_text(channel, _to(), "hola")
    assert "127.0.0.1" not in str(raised.value)  # no map of what answers where


@pytest.mark.parametrize(
    "base",
    [
        "{listener}/v21.0",  # the tenant's own server
        "{listener}/internal/admin#",  # a fragment would drop the /<id>/messages suffix
        "{listener}/internal?x=",
        "{devstack}/whatsapp/v21.0/../../internal",
        "{devstack}/whatsapp/v21.0/%2e%2e/internal",
        "http://user:pw@{devstack_host}/whatsapp/v21.0",
        "{devstack}/whatsapp/v21.0x",  # a prefix of a path segment is not the path
        "ftp://{devstack_host}/whatsapp/v21.0",
    ],
)
async def test_a_channel_url_the_operator_did_not_allow_is_refused_before_any_request(
    client: WhatsAppClient, listener: Listener, devstack_url: str, base: str
) -> None:
    url = base.format(
        listener=listener.url,
        devstack=devstack_url,
        devstack_host=devstack_url.removeprefix("http://"),
    )
    channel = Channel("meta", "1000000000000001", url, DEFAULT_TOKEN)
    with pytest.raises(Refused, match="refused"):
        await client.send_text(channel, _to(), "hola")
    with pytest.raises(Refused):
        await client.send_typing(channel, "wamid.x")
    assert listener.requests == []


async def test_the_default_token_goes_only_to_the_configured_graph_base(
    listener: Listener, devstack_url: str
) -> None:
    async with _client(_policy(devstack_url, listener.url)) as client:
        # An allowed endpoint, but not WHATSAPP_API_BASE_URL: the channel needs its own token.
        for channel in (
            Channel("meta", "1000000000000001", f"{listener.url}/v21.0", DEFAULT_TOKEN),
            Channel("360dialog", "1", f"{devstack_url}/whatsapp/360dialog", DEFAULT_TOKEN),
            Channel("360dialog", "1", f"{devstack_url}/whatsapp/v21.0", DEFAULT_TOKEN),
        ):
            with pytest.raises(Refused, match="default access token"):
                await client.send_text(channel, _to(), "hola")
        assert listener.requests == []
        # Its own credential may go to an allowed endpoint.
        listener.body = b'{"messages": [{"id": "wamid.HBgLMTIzNDU2Nzg5MA=="}]}'
        own = Channel("meta", "1000000000000001", f"{listener.url}/v21.0", "its-own-token")
        assert await client.send_text(own, _to(), "hola") == "wamid.HBgLMTIzNDU2Nzg5MA=="
    [request] = listener.requests
    assert request["path"] == "/v21.0/1000000000000001/messages"
    headers = request["headers"]
    assert isinstance(headers, dict)
    assert headers["Authorization"] == "Bearer its-own-token"


async def test_a_phone_number_id_that_is_not_digits_is_refused(
    client: WhatsAppClient, recorder: WhatsAppRecorder, devstack_url: str
) -> None:
    to = _to()
    channel = Channel("meta", "../../_control/faults", f"{devstack_url}/whatsapp/v21.0", "t")
    with pytest.raises(Refused, match="digits"):
        await client.send_text(channel, to, "hola")
    assert await recorder.sends(to) == []


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (400, b"<html>internal admin page: db password hunter2</html>", "HTTP 400 (no Graph"),
        (
            400,
            b'{"error": {"code": 100, "message": "Invalid parameter", "secret": "hunter2"},'
            b' "debug": "hunter2"}',
            "HTTP 400: (#100) Invalid parameter",
        ),
        (503, b"upstream hunter2 at 10.0.0.7 is down", "HTTP 503 (no Graph"),
    ],
)
async def test_only_a_parsed_graph_error_is_kept_never_the_raw_body(
    listener: Listener, devstack_url: str, status: int, body: bytes, expected: str
) -> None:
    listener.status, listener.body = status, body
    channel = Channel("meta", "1000000000000001", f"{listener.url}/v21.0", "its-own-token")
    async with _client(_policy(devstack_url, listener.url)) as client:
        with pytest.raises(SendError) as raised:
            await client.send_text(channel, _to(), "hola")
    assert str(raised.value).startswith(expected)
    assert "hunter2" not in str(raised.value)
    assert len(str(raised.value)) <= 250


@pytest.mark.parametrize(
    "body",
    [
        b'{"messages": [{"id": "<script>alert(1)</script>"}]}',
        b'{"messages": [{"id": "wamid.' + b"A" * 5000 + b'"}]}',
        b'{"messages": [{"id": 12345}]}',
        b'{"messages": []}',
        b"not json hunter2",
    ],
)
async def test_an_accepted_send_without_a_well_formed_wamid_is_ambiguous(
    listener: Listener, devstack_url: str, body: bytes
) -> None:
    listener.body = body
    channel = Channel("meta", "1000000000000001", f"{listener.url}/v21.0", "its-own-token")
    async with _client(_policy(devstack_url, listener.url)) as client:
        with pytest.raises(Ambiguous, match="well-formed message id") as raised:
            await client.send_text(channel, _to(), "hola")
    assert "hunter2" not in str(raised.value)


@pytest.mark.parametrize(
    "url",
    [
        "https://graph.facebook.com/v21.0#",
        "https://u@graph.facebook.com/v21.0",
        "https://graph.facebook.com/v21.0?a=b",
        "https://graph.facebook.com/v21.0/..",
        "https://graph.facebook.com/v21.0/a b",
        "https://graph.facebook.com:99999/v21.0",
        "gopher://graph.facebook.com/v21.0",
        "graph.facebook.com/v21.0",
        "https://evil.example\\graph.facebook.com/v21.0",
        "https://graph.facebook.com%2f@evil.example/v21.0",
        "",
    ],
)
def test_base_urls_with_anything_but_scheme_host_port_and_path_do_not_parse(url: str) -> None:
    with pytest.raises(ValueError, match=r"."):
        parse_base_url(url)


def test_allowed_bases_compare_scheme_host_port_and_whole_path_segments() -> None:
    [allowed] = parse_base_urls("https://Graph.Facebook.com/v21.0/")
    assert allowed.contains(parse_base_url("https://graph.facebook.com:443/v21.0"))
    assert allowed.contains(parse_base_url("https://graph.facebook.com/v21.0/sub"))
    for other in (
        "http://graph.facebook.com/v21.0",
        "https://graph.facebook.com:8443/v21.0",
        "https://graph.facebook.com.evil.example/v21.0",
        "https://graph.facebook.com/v21.00",
        "https://graph.facebook.com/v20.0",
    ):
        assert not allowed.contains(parse_base_url(other)), other


def test_the_allow_list_defaults_to_the_configured_bases_and_bad_entries_name_the_setting() -> None:
    settings = Settings(
        WHATSAPP_API_BASE_URL="https://graph.facebook.com/v21.0",
        WHATSAPP_360DIALOG_BASE_URL="https://waba-v2.360dialog.io",
        WHATSAPP_ACCESS_TOKEN=SecretStr("t"),
    )
    policy = SendPolicy.from_settings(settings)
    assert policy.allowed == parse_base_urls(
        "https://graph.facebook.com/v21.0 https://waba-v2.360dialog.io"
    )
    assert policy.default_token == "t"
    settings.WHATSAPP_API_ALLOWED_BASE_URLS = "https://a.example/v1, https://b.example"
    assert [a.host for a in SendPolicy.from_settings(settings).allowed] == [
        "a.example",
        "b.example",
    ]
    settings.WHATSAPP_API_ALLOWED_BASE_URLS = "https://a.example/v1,https://b.example/#"
    with pytest.raises(ValueError, match=r"WHATSAPP_API_ALLOWED_BASE_URLS: 'https://b\.example/#'"):
        SendPolicy.from_settings(settings)
