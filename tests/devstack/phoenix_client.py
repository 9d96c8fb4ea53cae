"""A raw Phoenix channel client over `websockets` for the Realtime stand-in tests.

It speaks vsn 1.0.0 (JSON objects) or 2.0.0 (JSON arrays, binary kinds 3 and 4) and hides
nothing: tests see every frame the server sends, including the ones realtime-py swallows.
"""

from __future__ import annotations

import asyncio
import json
import socket
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

import websockets
from websockets.asyncio.client import ClientConnection

from devstack.realtime import frames
from tests.fixtures.devstack import ANON_KEY


def ws_url(base_url: str, path: str = "/realtime/v1/websocket", **params: str) -> str:
    parts = urlsplit(base_url)
    query = f"?{urlencode(params)}" if params else ""
    return f"ws://{parts.netloc}{path}{query}"


@dataclass(frozen=True)
class Frame:
    topic: str
    event: str
    payload: Any
    ref: str | None
    join_ref: str | None
    binary: bool = False
    keys: tuple[str, ...] = ()


def _decode_kind4(data: bytes) -> Frame:
    assert data[0] == frames.KIND_USER_BROADCAST, f"unexpected binary kind {data[0]}"
    topic_size, event_size, meta_size, encoding = data[1:5]
    offset = 5
    topic = data[offset : offset + topic_size].decode()
    offset += topic_size
    event = data[offset : offset + event_size].decode()
    offset += event_size
    meta = data[offset : offset + meta_size].decode()
    offset += meta_size
    body = data[offset:]
    payload: dict[str, Any] = {
        "type": "broadcast",
        "event": event,
        "payload": json.loads(body) if encoding == frames.ENCODING_JSON else body,
    }
    if meta:
        payload["meta"] = json.loads(meta)
    return Frame(topic, "broadcast", payload, None, None, binary=True)


class PhoenixClient:
    def __init__(self, ws: ClientConnection, vsn: str) -> None:
        self.ws = ws
        self.vsn = vsn
        self._ref = 0

    @classmethod
    async def connect(
        cls,
        base_url: str,
        *,
        key: str = ANON_KEY,
        vsn: str = "1.0.0",
        receive_buffer: int | None = None,
    ) -> PhoenixClient:
        url = ws_url(base_url, apikey=key, vsn=vsn)
        sock = None
        if receive_buffer is not None:
            # A small kernel buffer set before connect caps the TCP window: a client that
            # stops reading then pushes back on the server after a few frames.
            parts = urlsplit(base_url)
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
            sock.connect((parts.hostname or "127.0.0.1", parts.port or 80))
        # No permessage-deflate: tests that measure bytes on the wire need them uncompressed.
        ws = await websockets.connect(url, sock=sock, max_size=None, max_queue=4, compression=None)
        return cls(ws, vsn)

    def next_ref(self) -> str:
        self._ref += 1
        return str(self._ref)

    async def push(
        self,
        topic: str,
        event: str,
        payload: Any,
        *,
        ref: str | None = None,
        join_ref: str | None = None,
    ) -> None:
        if self.vsn == "2.0.0":
            await self.ws.send(json.dumps([join_ref, ref, topic, event, payload]))
        else:
            message = {
                "topic": topic,
                "event": event,
                "payload": payload,
                "ref": ref,
                "join_ref": join_ref,
            }
            await self.ws.send(json.dumps(message))

    async def recv(self, within: float = 3.0) -> Frame:
        data = await asyncio.wait_for(self.ws.recv(), within)
        if isinstance(data, bytes):
            return _decode_kind4(data)
        decoded = json.loads(data)
        if isinstance(decoded, list):
            join_ref, ref, topic, event, payload = decoded
            return Frame(topic, event, payload, ref, join_ref)
        return Frame(
            decoded["topic"],
            decoded["event"],
            decoded["payload"],
            decoded["ref"],
            decoded.get("join_ref"),
            keys=tuple(decoded),
        )

    async def reply_to(self, ref: str | None, within: float = 3.0) -> Frame:
        """The phx_reply for `ref`, skipping anything else."""
        while True:
            frame = await self.recv(within)
            if frame.event == "phx_reply" and frame.ref == ref:
                return frame

    async def next_event(self, event: str, within: float = 3.0) -> Frame:
        while True:
            frame = await self.recv(within)
            if frame.event == event:
                return frame

    async def nothing(self, within: float = 0.3) -> None:
        try:
            frame = await self.recv(within)
        except TimeoutError:
            return
        raise AssertionError(f"expected no frame, got {frame}")

    async def join(
        self,
        topic: str,
        *,
        self_broadcast: bool | str = False,
        ack: bool | str = False,
        private: bool = False,
        access_token: str | None = None,
        extra_config: dict[str, Any] | None = None,
    ) -> tuple[str, Frame]:
        """phx_join `realtime:<topic>`; returns (join_ref, reply)."""
        ref = self.next_ref()
        payload: dict[str, Any] = {
            "config": {
                "broadcast": {"self": self_broadcast, "ack": ack},
                "presence": {"key": "", "enabled": False},
                "private": private,
                "postgres_changes": [],
                **(extra_config or {}),
            }
        }
        if access_token is not None:
            payload["access_token"] = access_token
        await self.push(f"realtime:{topic}", "phx_join", payload, ref=ref, join_ref=ref)
        return ref, await self.reply_to(ref)

    async def broadcast(
        self, topic: str, join_ref: str, event: str, payload: Any, *, binary: bool = False
    ) -> str:
        ref = self.next_ref()
        if binary:
            await self.ws.send(
                frames.encode_user_broadcast_push(
                    f"realtime:{topic}",
                    event,
                    json.dumps(payload).encode(),
                    join_ref=join_ref,
                    ref=ref,
                )
            )
        else:
            message = {"type": "broadcast", "event": event, "payload": payload}
            await self.push(f"realtime:{topic}", "broadcast", message, ref=ref, join_ref=join_ref)
        return ref

    async def close(self) -> None:
        await self.ws.close()
