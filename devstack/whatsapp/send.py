"""`POST …/messages`: messages, read receipts and typing indicators, as the Cloud API answers them.

Meta shape: `/whatsapp/<version>/<phone_number_id>/messages` with `Authorization: Bearer <token>`.
360dialog shape: `/whatsapp/360dialog/messages` with `D360-API-KEY: <key>` (the key names the
number, so the path has no phone number id). Any non-empty credential is accepted.

`GET …/<phone_number_id>?fields=…` (Meta) and `GET /whatsapp/360dialog/health_status` answer the
cheap authenticated reads that tell whether a credential works (`bridge doctor`); a fault queued
with `"applies_to": "any"` (e.g. code 190, an expired token) answers them instead.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import uuid
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from devstack.whatsapp import graph_errors
from devstack.whatsapp.faults import Fault
from devstack.whatsapp.payloads import InvalidRequest, ReadReceipt, Send, parse
from devstack.whatsapp.stand_in import WhatsAppStandIn

META = "meta"
D360 = "360dialog"


@dataclass(frozen=True)
class _Answer:
    status: int
    body: dict[str, Any] | str
    # False when the client hung up first: the server discards the response.
    reached_client: bool = True

    def response(self) -> Response:
        if isinstance(self.body, str):
            return PlainTextResponse(self.body, status_code=self.status)
        return JSONResponse(self.body, status_code=self.status)


async def messages(
    request: Request, stand_in: WhatsAppStandIn, *, provider: str, phone_number_id: str | None
) -> Response:
    raw = await request.body()
    entry = stand_in.requests.start(
        method=request.method,
        path=request.url.path,
        provider=provider,
        phone_number_id=phone_number_id,
        headers=request.headers,
        body=_recordable(raw),
    )
    answer = await _answer(request, raw, stand_in, entry, provider, phone_number_id)
    if answer.reached_client:
        entry["response"] = {"status": answer.status, "body": answer.body}
    else:
        entry["response"] = {"status": None, "body": None, "dropped": True}
    return answer.response()


async def lookup(
    request: Request, stand_in: WhatsAppStandIn, *, provider: str, phone_number_id: str | None
) -> Response:
    """The phone number's fields (Meta) or the number's messaging health (360dialog)."""
    entry = stand_in.requests.start(
        method=request.method,
        path=request.url.path,
        provider=provider,
        phone_number_id=phone_number_id,
        headers=request.headers,
        body=None,
    )
    entry["kind"] = "lookup"
    answer: _Answer | None = None
    if not _credential(request, provider):
        entry["kind"] = "unauthorized"
        answer = _Answer(*graph_errors.invalid_token())
    elif fault := stand_in.faults.take(
        to=None, phone_number_id=phone_number_id, provider=provider, is_send=False
    ):
        entry["fault"] = fault.as_json()
        answer = await _apply(fault, request)
    if answer is None and provider == D360:
        answer = _Answer(200, {"health_status": {"can_send_message": "AVAILABLE", "entities": []}})
    elif answer is None:
        # Meta answers the fields asked for, and always the id.
        known = {"display_phone_number": "+1 555-0100", "verified_name": "Stand-in Business"}
        fields = request.query_params.get("fields", "").split(",")
        answer = _Answer(
            200, {**{f: known[f] for f in fields if f in known}, "id": phone_number_id}
        )
    entry["response"] = {"status": answer.status, "body": answer.body}
    return answer.response()


async def _answer(
    request: Request,
    raw: bytes,
    stand_in: WhatsAppStandIn,
    entry: dict[str, Any],
    provider: str,
    phone_number_id: str | None,
) -> _Answer:
    if not _credential(request, provider):
        entry["kind"] = "unauthorized"
        return _Answer(*graph_errors.invalid_token())
    try:
        _, action = parse(raw)
    except InvalidRequest as invalid:
        entry["kind"] = "invalid"
        return _Answer(*graph_errors.invalid_parameter(invalid.details))
    is_send = isinstance(action, Send)
    entry["kind"] = "send" if is_send else ("typing" if _typing(action) else "read")
    fault = stand_in.faults.take(
        to=action.to if isinstance(action, Send) else None,
        phone_number_id=phone_number_id,
        provider=provider,
        is_send=is_send,
    )
    if fault is not None:
        entry["fault"] = fault.as_json()
        failed = await _apply(fault, request)
        if failed is not None:
            return failed
    if isinstance(action, ReadReceipt):
        return _Answer(200, {"success": True})
    wamid = _new_wamid(action.to)
    # Only Meta-shaped sends name the phone number the statuses belong to; 360dialog's own
    # webhooks are signed differently and are not reproduced.
    if provider == META and phone_number_id is not None:
        stand_in.webhooks.schedule(
            wamid=wamid, recipient_id=_wa_id(action.to), phone_number_id=phone_number_id
        )
    return _Answer(
        200,
        {
            "messaging_product": "whatsapp",
            "contacts": [{"input": action.to, "wa_id": _wa_id(action.to)}],
            "messages": [{"id": wamid}],
        },
    )


async def _apply(fault: Fault, request: Request) -> _Answer | None:
    """The failure a fault causes; None when the request then proceeds (a late answer)."""
    if fault.kind == "graph_error":
        assert fault.code is not None
        status = fault.http_status or graph_errors.kind_for(fault.code).http_status
        return _Answer(status, graph_errors.body(fault.code))
    if fault.kind == "http_error":
        return _server_error(fault.http_status or 500)
    assert fault.seconds is not None
    if fault.then == "answer":
        await asyncio.sleep(fault.seconds)
        return None
    # "drop": hold until the client gives up; a client still waiting gets the gateway's 504.
    try:
        await asyncio.wait_for(_disconnected(request), fault.seconds)
    except TimeoutError:
        return _Answer(504, "Gateway Timeout")
    return _Answer(504, "Gateway Timeout", reached_client=False)


def _server_error(status: int) -> _Answer:
    if status == 500:
        return _Answer(500, graph_errors.body(131000))
    if status == 503:
        return _Answer(503, graph_errors.body(131016))
    # Other 5xx come from the proxies in front of the Graph API, as text.
    return _Answer(status, f"{status} Server Error")


async def _disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


def _credential(request: Request, provider: str) -> bool:
    if provider == D360:
        return bool(request.headers.get("d360-api-key", "").strip())
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and bool(token.strip())


def _typing(action: Send | ReadReceipt) -> bool:
    return isinstance(action, ReadReceipt) and action.typing


def _wa_id(to: str) -> str:
    # The Cloud API answers with the normalised number: digits only, no "+" or spaces.
    digits = re.sub(r"\D", "", to)
    return digits or to


def _new_wamid(to: str) -> str:
    # Real ids are "wamid." + base64 of an opaque blob that embeds the recipient.
    blob = _wa_id(to).encode() + b"\x15\x02\x00\x11\x18\x12" + uuid.uuid4().hex.upper().encode()
    return "wamid." + base64.b64encode(blob).decode()


def _recordable(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", errors="replace")
