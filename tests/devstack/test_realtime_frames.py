"""The Realtime stand-in's frame codecs, against the byte layouts realtime-js and Realtime use."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devstack.realtime import frames
from devstack.realtime.frames import FrameError, UserPush, Vsn

short_text = st.text(max_size=40).filter(lambda s: len(s.encode()) <= 255)


def test_kind3_as_realtime_js_encodes_it() -> None:
    # realtime-js `channel.send` of {js: "ws"} on realtime:room1, join_ref "9", ref "10"
    data = (
        bytes([3, 1, 2, 14, 4, 0, 1]) + b"9" + b"10" + b"realtime:room1" + b"ping" + b'{"js":"ws"}'
    )
    msg = frames.decode(Vsn.V2, data)
    assert (msg.topic, msg.event, msg.ref, msg.join_ref) == (
        "realtime:room1",
        "broadcast",
        "10",
        "9",
    )
    assert msg.payload == UserPush("ping", True, b'{"js":"ws"}', {})


def test_kind4_layout() -> None:
    data = frames.encode_user_broadcast("realtime:room1", "ping", b'{"n":1}', json_encoded=True)
    assert data == bytes([4, 14, 4, 0, 1]) + b"realtime:room1ping" + b'{"n":1}'


@given(
    topic=short_text,
    event=short_text,
    join_ref=short_text,
    ref=short_text,
    body=st.binary(max_size=200),
    json_encoded=st.booleans(),
    meta=st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
)
def test_kind3_round_trips(
    topic: str,
    event: str,
    join_ref: str,
    ref: str,
    body: bytes,
    json_encoded: bool,
    meta: dict[str, int],
) -> None:
    metadata = json.dumps(meta) if meta else ""
    if len(metadata.encode()) > 255:
        return
    data = frames.encode_user_broadcast_push(
        topic,
        event,
        body,
        join_ref=join_ref,
        ref=ref,
        json_encoded=json_encoded,
        metadata=metadata,
    )
    msg = frames.decode(Vsn.V2, data)
    assert msg.topic == topic
    assert (msg.ref, msg.join_ref) == (ref or None, join_ref or None)
    assert msg.payload == UserPush(event, json_encoded, body, meta)


@given(st.binary(max_size=64))
def test_arbitrary_binary_never_escapes_as_anything_but_frame_error(data: bytes) -> None:
    try:
        frames.decode(Vsn.V2, data)
    except FrameError as exc:
        code = exc.code
    else:
        return
    assert code in (frames.CLOSE_INVALID_PAYLOAD, frames.CLOSE_UNSUPPORTED_DATA)


@given(st.text(max_size=64))
def test_arbitrary_text_never_escapes_as_anything_but_frame_error(text: str) -> None:
    codes = set()
    for vsn in Vsn:
        try:
            frames.decode(vsn, text)
        except FrameError as exc:
            codes.add(exc.code)
    assert codes <= {frames.CLOSE_INVALID_PAYLOAD}


def test_server_frames_have_the_shapes_the_clients_expect() -> None:
    v1 = json.loads(frames.encode(Vsn.V1, "realtime:a", "broadcast", {"x": 1}, join_ref="3"))
    assert v1 == {"topic": "realtime:a", "event": "broadcast", "payload": {"x": 1}, "ref": None}
    v2 = json.loads(frames.encode_reply(Vsn.V2, "realtime:a", "ok", {}, ref="4", join_ref="3"))
    assert v2 == ["3", "4", "realtime:a", "phx_reply", {"status": "ok", "response": {}}]


@pytest.mark.parametrize(
    ("requested", "vsn"),
    [(None, Vsn.V1), ("1.0.0", Vsn.V1), ("2.0.0", Vsn.V2), ("2.1.0", None), ("x", None)],
)
def test_vsn_negotiation(requested: str | None, vsn: Vsn | None) -> None:
    assert frames.negotiate_vsn(requested) is vsn
