"""One accepted WebSocket: a reader, a writer, and between them a bounded outbox.

Everything the server sends to a socket (replies and fan-out alike) goes through `send`, which
never waits: fan-out to many sockets stays a loop of appends, and a socket whose outbox overflows
(its client stopped reading) is closed instead of slowing anyone else down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from starlette.websockets import WebSocket, WebSocketDisconnect

from devstack.realtime.frames import CLOSE_MESSAGE_TOO_BIG, FrameError, Vsn

log = logging.getLogger("devstack.realtime")

CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_INTERNAL_ERROR = 1011
# "Try again later": the client fell too far behind; realtime-js and realtime-py both reconnect.
CLOSE_SLOW_CONSUMER = 1013

_CLOSE_TIMEOUT = 1.0


@dataclass(frozen=True)
class Limits:
    max_payload_bytes: int = 256_000  # Realtime's `max_payload_size_in_kb` (x1000) default
    max_frame_bytes: int = 4 * 1024 * 1024
    max_channels_per_client: int = 100  # Realtime's tenant default
    outbox_frames: int = 1024
    outbox_bytes: int = 4 * 1024 * 1024


class Connection:
    def __init__(
        self,
        websocket: WebSocket,
        vsn: Vsn,
        apikey: str,
        limits: Limits,
    ) -> None:
        self.websocket = websocket
        self.vsn = vsn
        self.apikey = apikey
        self.limits = limits
        self._outbox: deque[str | bytes] = deque()
        self._outbox_bytes = 0
        self._wakeup = asyncio.Event()
        self._emptied = asyncio.Event()
        self._emptied.set()
        self._done = asyncio.Event()
        self._close_code = CLOSE_NORMAL
        self._close_reason = ""
        self._flush = True
        self._peer_gone = False

    def send(self, frame: str | bytes) -> None:
        """Queue a frame; never blocks. Overflow closes the socket (drops the slow client)."""
        if self._done.is_set():
            return
        size = len(frame)
        if (
            len(self._outbox) >= self.limits.outbox_frames
            or self._outbox_bytes + size > self.limits.outbox_bytes
        ):
            log.warning("realtime: closing a socket whose client stopped reading")
            self.close(CLOSE_SLOW_CONSUMER, "client too slow", flush=False)
            return
        self._outbox.append(frame)
        self._outbox_bytes += size
        self._emptied.clear()
        self._wakeup.set()

    def close(self, code: int, reason: str = "", *, flush: bool = True) -> None:
        """Ask for the socket to close; `flush` first sends what is already queued."""
        if self._done.is_set():
            return
        self._close_code = code
        self._close_reason = reason
        self._flush = flush
        self._done.set()

    async def run(self, on_frame: Callable[[str | bytes], Awaitable[None]]) -> None:
        """Serve until the client leaves or a close is asked for; then close the WebSocket."""
        reader = asyncio.create_task(self._read_loop(on_frame))
        writer = asyncio.create_task(self._write_loop())
        try:
            await self._done.wait()
        finally:
            reader.cancel()
            if self._flush and not self._peer_gone:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._emptied.wait(), _CLOSE_TIMEOUT)
            writer.cancel()
            for task in (reader, writer):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            self._outbox.clear()
            if not self._peer_gone:
                # The close frame waits for the transport to be writable; a client that stopped
                # reading never makes it so, and the server must not wait on it forever.
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(
                        self.websocket.close(self._close_code, self._close_reason),
                        _CLOSE_TIMEOUT,
                    )

    async def _read_loop(self, on_frame: Callable[[str | bytes], Awaitable[None]]) -> None:
        try:
            while not self._done.is_set():
                message = await self.websocket.receive()
                if message["type"] == "websocket.disconnect":
                    self._peer_gone = True
                    self.close(int(message.get("code") or CLOSE_NORMAL))
                    return
                data: str | bytes | None = message.get("text")
                if data is None:
                    data = message.get("bytes")
                if data is None:
                    continue
                if len(data) > self.limits.max_frame_bytes:
                    self.close(CLOSE_MESSAGE_TOO_BIG, "frame too big")
                    return
                try:
                    await on_frame(data)
                except FrameError as exc:
                    self.close(exc.code, exc.reason)
                    return
        except WebSocketDisconnect:
            self._peer_gone = True
            self.close(CLOSE_NORMAL)
        except asyncio.CancelledError:
            raise
        except Exception:
            # A bug in handling one frame ends this socket only, never the server.
            log.exception("realtime: error while handling a client frame")
            self.close(CLOSE_INTERNAL_ERROR, "internal error")

    async def _write_loop(self) -> None:
        try:
            while True:
                while not self._outbox:
                    self._wakeup.clear()
                    await self._wakeup.wait()
                frame = self._outbox.popleft()
                self._outbox_bytes -= len(frame)
                if isinstance(frame, str):
                    await self.websocket.send_text(frame)
                else:
                    await self.websocket.send_bytes(frame)
                if not self._outbox:
                    self._emptied.set()
        except asyncio.CancelledError:
            raise
        except Exception:
            # The peer went away mid-send; the reader sees the disconnect too.
            self._peer_gone = True
            self._emptied.set()
            self.close(CLOSE_GOING_AWAY, flush=False)
