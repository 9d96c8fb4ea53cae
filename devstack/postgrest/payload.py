"""The request body of an RPC call, read as PostgREST's `getPayload` reads it.

JSON bodies: an object's keys are the argument names; an array of objects with identical keys is a
bulk call (one call per element); an empty body is `{}`; any other JSON value carries no arguments
(PostgREST turns it into `[]`). Form bodies are arguments as text. text/plain, text/xml and
application/octet-stream bodies go whole to a function's single unnamed parameter.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request

from devstack.postgrest.errors import body_too_large, invalid_body

RAW_MEDIA_TYPES = ("text/plain", "text/xml", "application/octet-stream")


@dataclass(frozen=True)
class Payload:
    media_type: str
    keys: frozenset[str]
    # The JSON text handed to json_to_record(set), or the raw body for an unnamed parameter.
    raw: bytes = b""
    # Arguments given as text (form bodies, GET query strings), cast by Postgres like literals.
    text_args: dict[str, str] | None = None
    is_object: bool = True


def media_type_of(content_type: str | None) -> str:
    if not content_type:
        return "application/json"
    return content_type.split(";", 1)[0].strip().lower()


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, or 413 when it exceeds `limit` bytes.

    An oversized body is still drained (not kept), so the client finishes sending and reads the
    413 instead of failing on a connection closed mid-upload.
    """
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size <= limit:
            chunks.append(chunk)
        else:
            chunks.clear()
    if size > limit:
        raise body_too_large(limit)
    return b"".join(chunks)


def from_body(body: bytes, content_type: str | None) -> Payload:
    media_type = media_type_of(content_type)
    if media_type == "application/json":
        return _json_payload(body)
    if media_type == "application/x-www-form-urlencoded":
        args = dict(parse_qsl(_utf8(body), keep_blank_values=True))
        return Payload(media_type, frozenset(args), text_args=args)
    if media_type in RAW_MEDIA_TYPES:
        return Payload(media_type, frozenset(), raw=body)
    raise invalid_body(f"Content-Type not acceptable: {media_type}")


def from_query(params: list[tuple[str, str]]) -> Payload:
    """GET/HEAD arguments: the query parameters (the caller has refused filters and the like)."""
    args = dict(params)
    return Payload("application/json", frozenset(args), text_args=args)


def _json_payload(body: bytes) -> Payload:
    if not body:
        return Payload("application/json", frozenset(), raw=body)
    try:
        value = json.loads(_utf8(body), parse_constant=_reject_constant)
    except ValueError:
        raise invalid_body("Empty or invalid json") from None
    if isinstance(value, dict):
        return Payload("application/json", frozenset(value), raw=body)
    if isinstance(value, list):
        return Payload("application/json", _array_keys(value), raw=body, is_object=False)
    return Payload("application/json", frozenset(), raw=b"[]", is_object=False)


def _array_keys(items: list[Any]) -> frozenset[str]:
    if not items:
        return frozenset()
    first = items[0]
    if not isinstance(first, dict):
        raise invalid_body("All object keys must match")
    keys = frozenset(first)
    if not all(isinstance(item, dict) and frozenset(item) == keys for item in items):
        raise invalid_body("All object keys must match")
    return keys


def _utf8(body: bytes) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise invalid_body("Empty or invalid json") from None


def _reject_constant(name: str) -> Any:
    # NaN and Infinity are not JSON (Python accepts them by default; PostgREST does not).
    raise ValueError(name)
