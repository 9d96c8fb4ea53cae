"""The WhatsApp Cloud API stand-in over raw HTTP: sends in the Meta and 360dialog shapes, the
request log, Graph errors for bad input, and queued faults.

Every test uses its own recipient number, and faults are matched by recipient, so tests never
see each other's requests or take each other's faults.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from devstack.whatsapp.recorder import RequestLog

PHONE_NUMBER_ID = "1000000000000001"
_numbers = itertools.count(1)


@pytest.fixture
def recipient() -> str:
    return f"4915100{next(_numbers):06d}"


@pytest.fixture
async def whatsapp(devstack_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=f"{devstack_url}/whatsapp", timeout=10) as client:
        yield client


def text_message(to: str, body: str = "Hallo!") -> dict[str, Any]:
    return {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": to,
        "type": "text",
        "text": {"body": body, "preview_url": False},
    }


META_PATH = f"/v21.0/{PHONE_NUMBER_ID}/messages"
META_AUTH = {"Authorization": "Bearer local-token"}
D360_PATH = "/360dialog/messages"
D360_AUTH = {"D360-API-KEY": "local-360-key"}


async def send(
    client: httpx.AsyncClient, to: str, *, give_up_after: float = 10.0
) -> httpx.Response:
    return await client.post(
        META_PATH, json=text_message(to), headers=META_AUTH, timeout=give_up_after
    )


async def recorded(client: httpx.AsyncClient, to: str) -> list[dict[str, Any]]:
    response = await client.get("/_control/requests", params={"to": to})
    assert response.status_code == 200
    entries: list[dict[str, Any]] = response.json()["requests"]
    return entries


async def queue_fault(client: httpx.AsyncClient, spec: dict[str, Any]) -> dict[str, Any]:
    response = await client.post("/_control/faults", json=spec)
    assert response.status_code == 201, response.text
    fault: dict[str, Any] = response.json()["fault"]
    return fault


async def test_a_meta_send_is_answered_with_a_wamid_and_recorded(
    whatsapp: httpx.AsyncClient, recipient: str
) -> None:
    response = await send(whatsapp, recipient)

    assert response.status_code == 200
    answer = response.json()
    wamid = answer["messages"][0]["id"]
    assert wamid.startswith("wamid.")
    assert answer == {
        "messaging_product": "whatsapp",
        "contacts": [{"input": recipient, "wa_id": recipient}],
        "messages": [{"id": wamid}],
    }
    [entry] = await recorded(whatsapp, recipient)
    assert entry["provider"] == "meta"
    assert entry["phone_number_id"] == PHONE_NUMBER_ID
    assert entry["path"] == f"/whatsapp{META_PATH}"
    assert entry["kind"] == "send"
    assert entry["headers"]["authorization"] == "Bearer local-token"
    assert entry["body"] == text_message(recipient)
    assert entry["response"] == {"status": 200, "body": answer}


async def test_wamids_are_unique(whatsapp: httpx.AsyncClient, recipient: str) -> None:
    answers = await asyncio.gather(*(send(whatsapp, recipient) for _ in range(20)))
    assert len({a.json()["messages"][0]["id"] for a in answers}) == 20


async def test_a_360dialog_send_is_answered_and_recorded(
    whatsapp: httpx.AsyncClient, recipient: str
) -> None:
    response = await whatsapp.post(D360_PATH, json=text_message(recipient), headers=D360_AUTH)

    assert response.status_code == 200
    assert response.json()["messages"][0]["id"].startswith("wamid.")
    [entry] = await recorded(whatsapp, recipient)
    assert (entry["provider"], entry["phone_number_id"]) == ("360dialog", None)
    assert entry["headers"]["d360-api-key"] == "local-360-key"


async def test_the_answer_carries_the_normalised_wa_id(whatsapp: httpx.AsyncClient) -> None:
    response = await send(whatsapp, "+49 151 0000 0001")
    assert response.json()["contacts"] == [{"input": "+49 151 0000 0001", "wa_id": "4915100000001"}]


@pytest.mark.parametrize(
    ("path", "headers", "body", "kind"),
    [
        (META_PATH, META_AUTH, {"status": "read", "message_id": "wamid.in1"}, "read"),
        (
            META_PATH,
            META_AUTH,
            {"status": "read", "message_id": "wamid.in2", "typing_indicator": {"type": "text"}},
            "typing",
        ),
        (D360_PATH, D360_AUTH, {"status": "read", "message_id": "wamid.in3"}, "read"),
    ],
    ids=["meta-read", "meta-typing", "360dialog-read"],
)
async def test_read_receipts_and_typing_indicators_succeed(
    whatsapp: httpx.AsyncClient, path: str, headers: dict[str, str], body: dict[str, Any], kind: str
) -> None:
    response = await whatsapp.post(
        path, json={"messaging_product": "whatsapp", **body}, headers=headers
    )
    assert (response.status_code, response.json()) == (200, {"success": True})
    entries = (await whatsapp.get("/_control/requests", params={"kind": kind})).json()["requests"]
    assert any(e["body"].get("message_id") == body["message_id"] for e in entries)


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        (META_PATH, {}),
        (META_PATH, {"Authorization": "Bearer"}),
        (META_PATH, {"Authorization": "Basic dXNlcjpwYXNz"}),
        (D360_PATH, {}),
        (D360_PATH, {"D360-API-KEY": ""}),
        (D360_PATH, META_AUTH),
    ],
    ids=["meta-none", "meta-empty", "meta-basic", "360-none", "360-empty", "360-with-bearer"],
)
async def test_requests_without_credentials_get_401(
    whatsapp: httpx.AsyncClient, recipient: str, path: str, headers: dict[str, str]
) -> None:
    response = await whatsapp.post(path, json=text_message(recipient), headers=headers)

    assert response.status_code == 401
    error = response.json()["error"]
    assert (error["type"], error["code"]) == ("OAuthException", 190)
    assert error["message"]
    assert error["fbtrace_id"]
    [entry] = await recorded(whatsapp, recipient)
    assert entry["kind"] == "unauthorized"


@pytest.mark.parametrize(
    ("body", "details"),
    [
        (b"{not json", "The request body is not valid JSON."),
        (b"[]", "The request body must be a JSON object."),
        (
            {"to": "1", "type": "text", "text": {"body": "x"}},
            "Param messaging_product is required and must be 'whatsapp'.",
        ),
        (
            {"messaging_product": "whatsapp", "type": "text", "text": {"body": "x"}},
            "Param to is required and must be a non-empty string.",
        ),
        (
            {"messaging_product": "whatsapp", "to": 4915100, "type": "text", "text": {"body": "x"}},
            "Param to is required and must be a non-empty string.",
        ),
        (
            {"messaging_product": "whatsapp", "to": "1", "type": "text", "text": {}},
            "Param text[body] is required and must be a non-empty string.",
        ),
        (
            {"messaging_product": "whatsapp", "to": "1", "type": "text", "text": "hi"},
            "Param text is required and must be an object.",
        ),
        (
            {"messaging_product": "whatsapp", "to": "1", "type": "text", "text": {"body": 5}},
            "Param text[body] is required and must be a non-empty string.",
        ),
        (
            {"messaging_product": "whatsapp", "to": "1", "type": "fax", "fax": {}},
            "Param type must be one of {audio, contacts, document, image, interactive, location, "
            "reaction, sticker, template, text, video}.",
        ),
        (
            {"messaging_product": "whatsapp", "status": "delivered", "message_id": "wamid.x"},
            "Param status must be 'read'.",
        ),
        (
            {"messaging_product": "whatsapp", "status": "read"},
            "Param message_id is required and must be a string.",
        ),
        (
            {
                "messaging_product": "whatsapp",
                "status": "read",
                "message_id": "wamid.x",
                "typing_indicator": {"type": "audio"},
            },
            "Param typing_indicator[type] must be 'text'.",
        ),
    ],
)
async def test_bad_bodies_get_graph_error_100(
    whatsapp: httpx.AsyncClient, body: bytes | dict[str, Any], details: str
) -> None:
    content = body if isinstance(body, bytes) else None
    payload = body if isinstance(body, dict) else None
    response = await whatsapp.post(META_PATH, content=content, json=payload, headers=META_AUTH)

    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["code"], error["type"], error["message"]) == (
        100,
        "OAuthException",
        "(#100) Invalid parameter",
    )
    assert error["error_data"] == {"messaging_product": "whatsapp", "details": details}


@pytest.mark.parametrize(
    ("code", "message"),
    [
        (130429, "(#130429) Rate limit hit"),
        (131047, "(#131047) Re-engagement message"),
        (131056, "(#131056) (Business Account, Consumer Account) pair rate limit hit"),
        (80007, "(#80007) Rate limit issues"),
        (4, "(#4) Application request limit reached"),
    ],
)
async def test_a_graph_error_fault_fails_one_send_then_sends_succeed(
    whatsapp: httpx.AsyncClient, recipient: str, code: int, message: str
) -> None:
    await queue_fault(whatsapp, {"kind": "graph_error", "code": code, "to": recipient})

    failed = await send(whatsapp, recipient)
    succeeded = await send(whatsapp, recipient)

    assert failed.status_code == 400
    error = failed.json()["error"]
    assert (error["code"], error["message"], error["type"]) == (code, message, "OAuthException")
    if code == 4:
        assert error["is_transient"] is True
    else:
        assert error["error_data"]["messaging_product"] == "whatsapp"
        assert error["error_data"]["details"]
    assert succeeded.status_code == 200
    first, second = await recorded(whatsapp, recipient)
    assert first["fault"]["code"] == code
    assert first["response"]["status"] == 400
    assert second["fault"] is None


@pytest.mark.parametrize(("status", "code"), [(500, 131000), (503, 131016)])
async def test_a_server_error_fault_fails_one_send(
    whatsapp: httpx.AsyncClient, recipient: str, status: int, code: int
) -> None:
    await queue_fault(whatsapp, {"kind": "http_error", "status": status, "to": recipient})

    failed = await send(whatsapp, recipient)
    succeeded = await send(whatsapp, recipient)

    assert failed.status_code == status
    assert failed.json()["error"]["code"] == code
    assert succeeded.status_code == 200


async def test_a_proxy_error_fault_answers_plain_text(
    whatsapp: httpx.AsyncClient, recipient: str
) -> None:
    await queue_fault(whatsapp, {"kind": "http_error", "status": 502, "to": recipient})
    failed = await send(whatsapp, recipient)
    assert failed.status_code == 502
    assert failed.headers["content-type"].startswith("text/plain")


async def test_a_fault_counts_down_and_only_hits_its_own_recipient(
    whatsapp: httpx.AsyncClient, recipient: str
) -> None:
    other = recipient + "9"
    await queue_fault(
        whatsapp, {"kind": "graph_error", "code": 130429, "to": recipient, "count": 2}
    )

    statuses = [(await send(whatsapp, other)).status_code]
    statuses += [(await send(whatsapp, recipient)).status_code for _ in range(3)]

    assert statuses == [200, 400, 400, 200]


async def test_faults_apply_to_sends_only_unless_asked(
    whatsapp: httpx.AsyncClient, recipient: str
) -> None:
    receipt = {"messaging_product": "whatsapp", "status": "read", "message_id": "wamid.y"}
    phone_number_id = f"9{recipient}"
    path = f"/v21.0/{phone_number_id}/messages"
    await queue_fault(
        whatsapp, {"kind": "http_error", "status": 503, "phone_number_id": phone_number_id}
    )
    assert (await whatsapp.post(path, json=receipt, headers=META_AUTH)).status_code == 200
    # The fault is still pending: the next send takes it.
    message = text_message(recipient)
    assert (await whatsapp.post(path, json=message, headers=META_AUTH)).status_code == 503

    await queue_fault(
        whatsapp,
        {
            "kind": "http_error",
            "status": 503,
            "phone_number_id": phone_number_id,
            "applies_to": "any",
        },
    )
    assert (await whatsapp.post(path, json=receipt, headers=META_AUTH)).status_code == 503


async def test_a_dropping_timeout_fault_holds_the_request_until_the_client_gives_up(
    whatsapp: httpx.AsyncClient, recipient: str
) -> None:
    await queue_fault(whatsapp, {"kind": "timeout", "seconds": 3, "then": "drop", "to": recipient})

    started = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        await send(whatsapp, recipient, give_up_after=0.4)
    assert time.monotonic() - started >= 0.4

    assert (await send(whatsapp, recipient)).status_code == 200
    await asyncio.sleep(0.2)  # the held request notices the disconnect
    held, after = await recorded(whatsapp, recipient)
    assert held["fault"]["kind"] == "timeout"
    assert held["response"] == {"status": None, "body": None, "dropped": True}
    assert after["response"]["status"] == 200


async def test_an_answering_timeout_fault_answers_late(
    whatsapp: httpx.AsyncClient, recipient: str
) -> None:
    await queue_fault(
        whatsapp, {"kind": "timeout", "seconds": 0.5, "then": "answer", "to": recipient}
    )

    started = time.monotonic()
    late = await send(whatsapp, recipient)

    assert time.monotonic() - started >= 0.5
    assert late.status_code == 200
    assert late.json()["messages"][0]["id"].startswith("wamid.")


@pytest.mark.parametrize(
    "spec",
    [
        {"kind": "explode"},
        {"kind": "graph_error"},
        {"kind": "graph_error", "code": "131056"},
        {"kind": "http_error", "status": 404},
        {"kind": "timeout", "seconds": 0},
        {"kind": "timeout", "then": "maybe"},
        {"kind": "graph_error", "code": 4, "count": 0},
        [],
    ],
)
async def test_malformed_fault_specs_are_refused(whatsapp: httpx.AsyncClient, spec: Any) -> None:
    response = await whatsapp.post("/_control/faults", json=spec)
    assert response.status_code == 400
    assert response.json()["error"]


async def test_pending_faults_are_listed(whatsapp: httpx.AsyncClient, recipient: str) -> None:
    fault = await queue_fault(whatsapp, {"kind": "graph_error", "code": 4, "to": recipient})
    pending = (await whatsapp.get("/_control/faults")).json()["faults"]
    assert fault in pending
    await send(whatsapp, recipient)
    pending = (await whatsapp.get("/_control/faults")).json()["faults"]
    assert fault["id"] not in [f["id"] for f in pending]


def test_the_request_log_keeps_only_the_newest_entries() -> None:
    log = RequestLog(capacity=3)
    for n in range(5):
        log.start(
            method="POST",
            path="/whatsapp/360dialog/messages",
            provider="360dialog",
            phone_number_id=None,
            headers={},
            body={"to": str(n)},
        )
    assert [e["to"] for e in log.entries()] == ["2", "3", "4"]
    assert [e["seq"] for e in log.entries(since=4)] == [5]
