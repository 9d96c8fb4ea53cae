"""The WhatsApp client against the Cloud API stand-in: every failure lands in the class that tells
the sender what it may do (retry, never re-send, give up)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from bridge.http_pool import pooled_session
from jobs.whatsapp_api import (
    Ambiguous,
    Channel,
    Rejected,
    SendError,
    Throttled,
    WhatsAppClient,
    WindowClosed,
)
from tests.fixtures.devstack import free_port
from tests.fixtures.worker import WhatsAppRecorder


@pytest.fixture
async def client() -> AsyncIterator[WhatsAppClient]:
    session = pooled_session(timeout=1.0, max_connections=4)
    try:
        yield WhatsAppClient(session)
    finally:
        await session.close()


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


async def test_an_api_that_cannot_be_reached_is_a_rejection(client: WhatsAppClient) -> None:
    # Nothing reached a server: the message is certainly not out.
    channel = Channel("meta", "1", f"http://127.0.0.1:{free_port()}/v21.0", "token")
    with pytest.raises(Rejected, match="cannot connect"):
        await client.send_text(channel, _to(), "hola")
