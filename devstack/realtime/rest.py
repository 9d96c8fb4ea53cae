"""Realtime's REST broadcast: the batch `POST /api/broadcast` and the single-message
`POST /api/broadcast/{topic}/events/{event}` (what realtime-py `http_send` and realtime-js
`httpSend` call), both under the gateway prefix `/realtime/v1`."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote_to_bytes

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from devstack import auth
from devstack.realtime import frames, policies, tokens
from devstack.realtime.hub import JsonBroadcast, UserBroadcast
from devstack.realtime.runtime import RealtimeRuntime

_SINGLE_PREFIX = b"/api/broadcast/"
_JSON = "application/json"
_BINARY = "application/octet-stream"


def _unauthorized() -> JSONResponse:
    return JSONResponse({"message": "Unauthorized"}, status_code=401)


def _caller(request: Request, runtime: RealtimeRuntime) -> Mapping[str, Any] | None:
    """The caller's claims, or None when unauthorized."""
    # Bearer first, else the apikey header, as Realtime's tenant auth plug reads them.
    token = auth.bearer_token(request.headers.get("authorization"))
    if token is None:
        token = request.headers.get("apikey")
    if not token:
        return None
    try:
        return tokens.verify(token, runtime.jwt_secret)
    except tokens.TokenError:
        return None


async def _may_write(runtime: RealtimeRuntime, topic: str, claims: Mapping[str, Any]) -> bool:
    pool = runtime.pool
    return pool is not None and await policies.can_write(pool, topic, claims)


def _media_type(request: Request) -> str | None:
    content_type = request.headers.get("content-type")
    if content_type is None:
        return None
    return content_type.split(";", 1)[0].strip().lower()


def _parse_bool(value: Any) -> bool | None:
    # Ecto's boolean cast
    if isinstance(value, bool):
        return value
    if value in ("true", "1"):
        return True
    if value in ("false", "0"):
        return False
    return None


def _is_uuid(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _message_errors(message: Any, max_payload_bytes: int) -> dict[str, list[str]]:
    """Ecto changeset errors for one batch message, in Realtime's shape."""
    if not isinstance(message, dict):
        return {"messages": ["is invalid"]}
    errors: dict[str, list[str]] = {}
    for key in ("topic", "event"):
        value = message.get(key)
        if _blank(value):
            errors[key] = ["can't be blank"]
        elif not isinstance(value, str):
            errors[key] = ["is invalid"]
    payload = message.get("payload")
    if payload is None:
        errors["payload"] = ["can't be blank"]
    elif not isinstance(payload, dict):
        errors["payload"] = ["is invalid"]
    elif len(frames.dumps(payload)) > max_payload_bytes:
        errors["payload"] = ["Payload size exceeds tenant limit"]
    if message.get("private") is not None and _parse_bool(message["private"]) is None:
        errors["private"] = ["is invalid"]
    msg_id = message.get("id")
    if msg_id is not None and not _is_uuid(msg_id):
        # Ecto casts the embedded message's `id` as a binary_id (a UUID).
        errors["id"] = ["is invalid"]
    return errors


async def broadcast_batch(request: Request, runtime: RealtimeRuntime) -> Response:
    claims = _caller(request, runtime)
    if claims is None:
        return _unauthorized()
    media_type = _media_type(request)
    if media_type not in (None, _JSON):
        return JSONResponse({"error": "Unsupported Media Type. Use application/json"}, 415)
    body = await request.body()
    try:
        document = json.loads(body) if body.strip() else {}
    except (ValueError, RecursionError):
        return JSONResponse({"error": "Malformed JSON body"}, status_code=400)
    messages = document.get("messages") if isinstance(document, dict) else None
    if messages is None or messages == []:
        return JSONResponse({"errors": {"messages": ["can't be blank"]}}, status_code=422)
    if not isinstance(messages, list):
        return JSONResponse({"errors": {"messages": ["is invalid"]}}, status_code=422)
    limit = runtime.limits.max_payload_bytes
    per_message = [_message_errors(m, limit) for m in messages]
    if any(per_message):
        return JSONResponse({"errors": {"messages": per_message}}, status_code=422)
    # Private messages go out only where the caller passes the write policy; the others are
    # dropped without a word (still 202), as Realtime does. One check per private topic.
    writable: dict[str, bool] = {}
    for message in messages:
        private = _parse_bool(message.get("private")) or False
        topic = message["topic"]
        if private:
            if topic not in writable:
                writable[topic] = await _may_write(runtime, topic, claims)
            if not writable[topic]:
                continue
        payload: dict[str, Any] = {
            "payload": message["payload"],
            "event": message["event"],
            "type": "broadcast",
        }
        if message.get("id") is not None:
            payload["meta"] = {"id": message["id"]}
        runtime.hub.broadcast(topic, private, JsonBroadcast(f"realtime:{topic}", payload))
    return Response(status_code=202)


def _single_path(request: Request) -> tuple[str, str] | None:
    """Topic and event from the raw path, so that an encoded `/` stays inside its segment."""
    raw_path: bytes = request.scope.get("raw_path") or request.url.path.encode()
    start = raw_path.find(_SINGLE_PREFIX)
    if start < 0:
        return None
    parts = raw_path[start + len(_SINGLE_PREFIX) :].split(b"/")
    if len(parts) != 3 or parts[1] != b"events" or not parts[0] or not parts[2]:
        return None
    topic, event = (unquote_to_bytes(p).decode("utf-8", "replace") for p in (parts[0], parts[2]))
    return topic, event


async def broadcast_single(request: Request, runtime: RealtimeRuntime) -> Response:
    path = _single_path(request)
    if path is None:
        return JSONResponse({"error": "Not Found"}, status_code=404)
    topic, event = path
    claims = _caller(request, runtime)
    if claims is None:
        return _unauthorized()
    # The binary frame that carries it to v2 sockets has one-byte lengths.
    too_long = {
        field: ["should be at most 255 bytes"]
        for field, value in (("topic", f"realtime:{topic}"), ("event", event))
        if len(value.encode()) > 255
    }
    if too_long:
        return JSONResponse({"errors": too_long}, status_code=422)
    media_type = _media_type(request)
    if media_type not in (None, _JSON, _BINARY):
        return JSONResponse(
            {"error": "Unsupported Media Type. Use application/json or application/octet-stream"},
            status_code=415,
        )
    private = request.query_params.get("private") == "true"
    body = await request.body()
    limit = runtime.limits.max_payload_bytes
    message: UserBroadcast
    if media_type == _BINARY:
        if len(body) > limit:
            return _too_big()
        message = UserBroadcast(f"realtime:{topic}", event, body, json_encoded=False)
    else:
        try:
            payload = json.loads(body) if body.strip() else {}
        except (ValueError, RecursionError):
            return JSONResponse({"error": "Malformed JSON body"}, status_code=400)
        if not isinstance(payload, dict):
            # Plug's JSON parser puts a non-object body under "_json".
            payload = {"_json": payload}
        encoded = frames.dumps(payload).encode()
        if len(encoded) > limit:
            return _too_big()
        message = UserBroadcast(
            f"realtime:{topic}", event, encoded, json_encoded=True, parsed=payload
        )
    if private and not await _may_write(runtime, topic, claims):
        return JSONResponse({"message": "Unauthorized"}, status_code=403)
    runtime.hub.broadcast(topic, private, message)
    return Response(status_code=202)


def _too_big() -> JSONResponse:
    return JSONResponse(
        {"errors": {"payload": ["Payload size exceeds tenant limit"]}}, status_code=422
    )
