"""Phoenix channel frames as Supabase Realtime puts them on the wire.

Two serializers, chosen per socket by the `vsn` connect parameter:

- 1.0.0 (realtime-py): text JSON objects. Server frames carry exactly `topic`, `event`, `payload`
  and `ref` (Phoenix V1 never sends `join_ref`; realtime-py drops frames without `ref`).
- 2.0.0 (realtime-js): text JSON arrays `[join_ref, ref, topic, event, payload]`, plus binary
  frames. Clients push kind 0 (push with a binary payload) and kind 3 (user broadcast push, what
  realtime-js `channel.send` emits); the server sends kind 4 (user broadcast). Header fields are
  uint8 lengths, strings are UTF-8.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from typing import Any

# WebSocket close codes used when a frame cannot be understood at all. Phoenix crashes the
# transport on such frames; a clean close with a meaningful code is the closest civil equivalent.
CLOSE_UNSUPPORTED_DATA = 1003
CLOSE_INVALID_PAYLOAD = 1007
CLOSE_MESSAGE_TOO_BIG = 1009

KIND_PUSH = 0
KIND_USER_BROADCAST_PUSH = 3
KIND_USER_BROADCAST = 4

ENCODING_BINARY = 0
ENCODING_JSON = 1


class Vsn(enum.Enum):
    V1 = "1.0.0"
    V2 = "2.0.0"


def negotiate_vsn(requested: str | None) -> Vsn | None:
    """Phoenix matches `~> 1.0.0` and `~> 2.0.0`; anything else is refused."""
    if requested is None or requested == "":
        return Vsn.V1
    parts = requested.split(".")
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        return None
    major, minor = int(parts[0]), int(parts[1])
    if major == 1 and minor == 0:
        return Vsn.V1
    if major == 2 and minor == 0:
        return Vsn.V2
    return None


class FrameError(Exception):
    """A frame that cannot be decoded; the socket is closed with `code`."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


@dataclass(frozen=True, slots=True)
class UserPush:
    """The payload of a kind 3 frame: realtime-js `channel.send({type: 'broadcast', ...})`."""

    event: str
    json_encoded: bool
    body: bytes
    metadata: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Inbound:
    """One decoded client frame. `payload` is the JSON value for text frames, a `UserPush` for
    kind 3 and raw bytes for kind 0."""

    topic: str
    event: str
    payload: Any
    ref: str | None
    join_ref: str | None
    size: int


def decode(vsn: Vsn, data: str | bytes) -> Inbound:
    if vsn is Vsn.V1:
        if isinstance(data, bytes):
            raise FrameError(CLOSE_UNSUPPORTED_DATA, "binary frames need vsn 2.0.0")
        return _decode_v1(data)
    if isinstance(data, bytes):
        return _decode_binary(data)
    return _decode_v2_text(data)


def _load_json(text: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise FrameError(CLOSE_INVALID_PAYLOAD, "frame is not valid JSON") from exc


def _ref(value: Any, name: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise FrameError(CLOSE_INVALID_PAYLOAD, f"{name} must be a string or null")


def _name(value: Any, name: str) -> str:
    if isinstance(value, str):
        return value
    raise FrameError(CLOSE_INVALID_PAYLOAD, f"{name} must be a string")


def _decode_v1(text: str) -> Inbound:
    obj = _load_json(text)
    if not isinstance(obj, dict):
        raise FrameError(CLOSE_INVALID_PAYLOAD, "expected a JSON object")
    # Phoenix V1 fetches these four keys strictly; join_ref is optional.
    missing = [k for k in ("topic", "event", "payload", "ref") if k not in obj]
    if missing:
        raise FrameError(CLOSE_INVALID_PAYLOAD, f"missing keys: {', '.join(missing)}")
    return Inbound(
        topic=_name(obj["topic"], "topic"),
        event=_name(obj["event"], "event"),
        payload=obj["payload"],
        ref=_ref(obj["ref"], "ref"),
        join_ref=_ref(obj.get("join_ref"), "join_ref"),
        size=len(text),
    )


def _decode_v2_text(text: str) -> Inbound:
    arr = _load_json(text)
    if not isinstance(arr, list) or len(arr) < 5:
        raise FrameError(CLOSE_INVALID_PAYLOAD, "expected a V2 array")
    join_ref, ref, topic, event, payload = arr[:5]
    return Inbound(
        topic=_name(topic, "topic"),
        event=_name(event, "event"),
        payload=payload,
        ref=_ref(ref, "ref"),
        join_ref=_ref(join_ref, "join_ref"),
        size=len(text),
    )


class _Reader:
    """Walks a binary frame; running off the end means the frame lied about its lengths."""

    def __init__(self, data: bytes, offset: int) -> None:
        self.data = data
        self.offset = offset

    def sizes(self, count: int) -> list[int]:
        end = self.offset + count
        if end > len(self.data):
            raise FrameError(CLOSE_INVALID_PAYLOAD, "binary frame header is truncated")
        sizes = list(self.data[self.offset : end])
        self.offset = end
        return sizes

    def take(self, size: int) -> bytes:
        end = self.offset + size
        if end > len(self.data):
            raise FrameError(CLOSE_INVALID_PAYLOAD, "binary frame is truncated")
        chunk = self.data[self.offset : end]
        self.offset = end
        return chunk

    def text(self, size: int, name: str) -> str:
        try:
            return self.take(size).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise FrameError(CLOSE_INVALID_PAYLOAD, f"{name} is not UTF-8") from exc

    def rest(self) -> bytes:
        return self.data[self.offset :]


def _optional_ref(value: str) -> str | None:
    # realtime-js writes a missing ref as an empty string
    return value or None


def _decode_binary(data: bytes) -> Inbound:
    if not data:
        raise FrameError(CLOSE_INVALID_PAYLOAD, "empty binary frame")
    kind = data[0]
    reader = _Reader(data, 1)
    if kind == KIND_PUSH:
        join_ref_size, ref_size, topic_size, event_size = reader.sizes(4)
        join_ref = reader.text(join_ref_size, "join_ref")
        ref = reader.text(ref_size, "ref")
        topic = reader.text(topic_size, "topic")
        event = reader.text(event_size, "event")
        return Inbound(
            topic=topic,
            event=event,
            payload=reader.rest(),
            ref=_optional_ref(ref),
            join_ref=_optional_ref(join_ref),
            size=len(data),
        )
    if kind == KIND_USER_BROADCAST_PUSH:
        join_ref_size, ref_size, topic_size, event_size, meta_size, encoding = reader.sizes(6)
        join_ref = reader.text(join_ref_size, "join_ref")
        ref = reader.text(ref_size, "ref")
        topic = reader.text(topic_size, "topic")
        user_event = reader.text(event_size, "user_event")
        metadata: dict[str, Any] = {}
        if meta_size:
            meta = _load_json(reader.text(meta_size, "metadata"))
            if not isinstance(meta, dict):
                raise FrameError(CLOSE_INVALID_PAYLOAD, "metadata must be a JSON object")
            metadata = meta
        body = reader.rest()
        return Inbound(
            topic=topic,
            event="broadcast",
            payload=UserPush(user_event, encoding != ENCODING_BINARY, body, metadata),
            ref=_optional_ref(ref),
            join_ref=_optional_ref(join_ref),
            size=len(body),
        )
    raise FrameError(CLOSE_UNSUPPORTED_DATA, f"unknown binary frame kind {kind}")


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def encode(
    vsn: Vsn,
    topic: str,
    event: str,
    payload: Any,
    *,
    ref: str | None = None,
    join_ref: str | None = None,
) -> str:
    """A text frame from the server. Replies are always text, whatever the serializer."""
    if vsn is Vsn.V1:
        return dumps({"topic": topic, "event": event, "payload": payload, "ref": ref})
    return dumps([join_ref, ref, topic, event, payload])


def encode_reply(
    vsn: Vsn,
    topic: str,
    status: str,
    response: dict[str, Any],
    *,
    ref: str | None,
    join_ref: str | None,
) -> str:
    payload = {"status": status, "response": response}
    return encode(vsn, topic, "phx_reply", payload, ref=ref, join_ref=join_ref)


def _utf8_field(value: str, name: str) -> bytes:
    raw = value.encode("utf-8")
    if len(raw) > 255:
        raise ValueError(f"{name} is longer than 255 bytes")
    return raw


def encode_user_broadcast(
    topic: str, user_event: str, body: bytes, *, json_encoded: bool, metadata: str = ""
) -> bytes:
    """Kind 4, the frame realtime-js decodes into `{type, event, payload[, meta]}`."""
    topic_raw = _utf8_field(topic, "topic")
    event_raw = _utf8_field(user_event, "user_event")
    meta_raw = _utf8_field(metadata, "metadata")
    header = bytes(
        (
            KIND_USER_BROADCAST,
            len(topic_raw),
            len(event_raw),
            len(meta_raw),
            ENCODING_JSON if json_encoded else ENCODING_BINARY,
        )
    )
    return b"".join((header, topic_raw, event_raw, meta_raw, body))


def encode_user_broadcast_push(
    topic: str,
    user_event: str,
    body: bytes,
    *,
    join_ref: str = "",
    ref: str = "",
    json_encoded: bool = True,
    metadata: str = "",
) -> bytes:
    """Kind 3 as realtime-js builds it (used by tests and tooling that act as a JS client)."""
    fields = [
        _utf8_field(join_ref, "join_ref"),
        _utf8_field(ref, "ref"),
        _utf8_field(topic, "topic"),
        _utf8_field(user_event, "user_event"),
        _utf8_field(metadata, "metadata"),
    ]
    header = bytes(
        (
            KIND_USER_BROADCAST_PUSH,
            *(len(f) for f in fields),
            ENCODING_JSON if json_encoded else ENCODING_BINARY,
        )
    )
    return b"".join((header, *fields, body))
