"""Open-loop load at a fixed rate (wrk cannot pace): request i is due at start + i/rate whatever
happened to the earlier ones, and its latency runs from that due time, not from when it was
actually written, so a stalled server (or generator) shows up in the percentiles instead of
silently lowering the offered load (coordinated omission).

Raw HTTP/1.1 over asyncio streams with keep-alive: an idle connection is reused, a new one is
opened when all are busy, exactly as a pool of senders would.
"""

from __future__ import annotations

import asyncio
import collections
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from bench.ingest_bodies import SignedBody

READY_CONNECTIONS = 16


class _Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def post(self, head: bytes, body: bytes) -> tuple[int, bool]:
        """Status and whether the connection may be reused."""
        self.writer.write(head + body)
        await self.writer.drain()
        raw = await self.reader.readuntil(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        length = 0
        keep = True
        for line in lines[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "connection" and value.strip().lower() == "close":
                keep = False
        if length:
            await self.reader.readexactly(length)
        return status, keep

    def close(self) -> None:
        self.writer.close()


@dataclass
class PacedResult:
    sent: int
    seconds: float
    latencies: list[float] = field(default_factory=list)
    statuses: collections.Counter[int] = field(default_factory=collections.Counter)
    socket_errors: collections.Counter[str] = field(default_factory=collections.Counter)
    # How late the generator itself issued a request (its event loop, not the server).
    max_generator_lag: float = 0.0

    @property
    def sent_per_s(self) -> float:
        return self.sent / self.seconds if self.seconds else 0.0


async def paced(
    url: str,
    bodies: list[SignedBody],
    rate: float,
    *,
    max_connections: int = 64,
    grace: float = 10.0,
) -> PacedResult:
    """Send `bodies` at `rate`/s over at most `max_connections` keep-alive connections, then
    wait at most `grace` seconds for the last answers.

    The cap stands for a sender with a bounded pool: when every connection is busy a request
    waits for one (its latency still counts from its due time). Without it a server that
    falls behind would face thousands of new connections, a different test."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    prefix = (
        f"POST {parts.path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
    ).encode()
    loop = asyncio.get_running_loop()
    idle: collections.deque[_Conn] = collections.deque()
    opened: list[_Conn] = []
    slots = asyncio.Semaphore(max_connections)

    async def connect() -> _Conn:
        conn = _Conn(*await asyncio.open_connection(host, port))
        opened.append(conn)
        return conn

    # Connections opened before the clock starts: steady state, not TCP set-up, is measured.
    # FIFO reuse spreads requests over all of them (and so over every uvicorn worker).
    ready = min(READY_CONNECTIONS, max_connections)
    idle.extend(await asyncio.gather(*(connect() for _ in range(ready))))
    result = PacedResult(sent=0, seconds=0.0)
    last_sent = 0.0

    async def one(item: SignedBody, due: float) -> None:
        nonlocal last_sent
        head = (
            prefix
            + (
                f"X-Hub-Signature-256: {item.signature}\r\nContent-Length: {len(item.body)}\r\n\r\n"
            ).encode()
        )
        async with slots:
            conn = idle.popleft() if idle else None
            try:
                conn = conn or await connect()
                last_sent = max(last_sent, loop.time())
                result.sent += 1
                status, keep = await conn.post(head, item.body)
            except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                result.socket_errors[type(exc).__name__] += 1
                if conn is not None:
                    conn.close()
                return
            result.latencies.append(loop.time() - due)
            result.statuses[status] += 1
            if keep:
                idle.append(conn)
            else:
                conn.close()

    tasks: dict[asyncio.Task[None], float] = {}
    start = loop.time() + 0.05
    try:
        for i, item in enumerate(bodies):
            due = start + i / rate
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            result.max_generator_lag = max(result.max_generator_lag, loop.time() - due)
            tasks[asyncio.create_task(one(item, due))] = due
        _, pending = await asyncio.wait(tasks, timeout=grace)
        # A server that fell behind leaves requests unanswered: they count as errors, and
        # their wait so far (a lower bound) joins the latencies so the percentiles do not
        # improve by leaving out the slowest requests.
        now = loop.time()
        for task in pending:
            result.socket_errors["unanswered"] += 1
            result.latencies.append(now - tasks[task])
    finally:
        for task in tasks:
            task.cancel()
        for conn in opened:
            conn.close()
    # The span the sends covered, the last one's interval included: n sends at the exact
    # rate give n / rate seconds.
    result.seconds = last_sent - start + 1 / rate
    return result
