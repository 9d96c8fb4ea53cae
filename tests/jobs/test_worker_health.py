"""`arq --check` says whether the worker can make progress, and SIGTERM ends it in time: the real
worker, the real `arq --check` CLI, and Postgres reached through a TCP path the test can freeze
(connections stay open and nothing answers, as behind a dead NAT or a hung pooler)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from tests.factories import whatsapp as wa
from tests.fixtures.webhook import WebhookClient
from tests.fixtures.worker import TurnStack, Worker, eventually, make_workspace
from tests.jobs.turns import say

JOB_TIMEOUT = 20
# arq refreshes its record every 10 s (WorkerSettings.health_check_interval) and the progress
# probe waits at most 2 s: a stalled worker fails the check well within this.
STALL_NOTICED_WITHIN = 20


class FreezablePath:
    """A TCP proxy to Postgres that can stop passing bytes without closing anything."""

    def __init__(self, host: str, port: int) -> None:
        self._upstream = (host, port)
        self._open = asyncio.Event()
        self._open.set()
        self._server: asyncio.Server | None = None
        self._pumps: set[asyncio.Task[None]] = set()
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    def freeze(self) -> None:
        self._open.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self._upstream)
        self._writers += [writer, up_writer]
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pump(src, dst))
            self._pumps.add(task)
            task.add_done_callback(self._pumps.discard)

    async def _pump(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await src.read(65536):
                await self._open.wait()
                dst.write(data)
                await dst.drain()
        dst.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._pumps):
            task.cancel()
        for writer in self._writers:
            writer.close()


@pytest.fixture
async def frozen_path_url(turn_stack: TurnStack) -> AsyncIterator[tuple[FreezablePath, str]]:
    parts = urlsplit(turn_stack.database_url)
    path = FreezablePath(parts.hostname or "127.0.0.1", parts.port or 5432)
    port = await path.start()
    netloc = f"{parts.username}@127.0.0.1:{port}" if parts.username else f"127.0.0.1:{port}"
    yield path, urlunsplit(parts._replace(netloc=netloc))
    await path.close()


async def _check(worker: Worker, database_url: str) -> int:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "arq",
        "jobs.worker.WorkerSettings",
        "--check",
        env=worker.env(DATABASE_URL=database_url),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    return await asyncio.wait_for(proc.wait(), 30)


async def test_a_worker_that_cannot_reach_its_database_fails_the_check_and_stops_on_sigterm(
    turn_db: asyncpg.Pool,
    inbox: WebhookClient,
    worker: Worker,
    frozen_path_url: tuple[FreezablePath, str],
) -> None:
    path, url = frozen_path_url
    proc = await worker.start(DATABASE_URL=url, JOBS_JOB_TIMEOUT_SECONDS=str(JOB_TIMEOUT))
    try:

        async def healthy() -> bool:
            return await _check(worker, url) == 0

        await eventually(healthy, within=30)

        path.freeze()
        # A customer writes meanwhile: the turn's job waits on the frozen database.
        ws = await make_workspace(turn_db)
        await say(inbox, ws.phone_number_id, wa.customer_phone(), "hola")

        async def stalled() -> bool:
            return await _check(worker, url) != 0

        await eventually(stalled, within=STALL_NOTICED_WITHIN)

        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), JOB_TIMEOUT)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
