"""The real worker (`arq jobs.worker.WorkerSettings`) outlives Redis restarts: its own
redis-server is killed (SIGKILL, no persistence: every key is gone) and started again on the same
port, twice, and the same process still answers a customer who writes afterwards. SIGTERM still
ends it promptly while Redis is away."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest

from bench.soak_services import RedisServer
from tests.factories import whatsapp as wa
from tests.fixtures.postgres import RUN_ID
from tests.fixtures.webhook import WebhookClient, open_webhook_client, settings_for
from tests.fixtures.worker import TurnStack, WhatsAppRecorder, Worker, eventually, make_workspace
from tests.jobs.turns import say

# Long enough for the worker's poll loop to find Redis gone and start waiting for it.
OUTAGE_SECONDS = 1.5
# SIGTERM while Redis is away: the worker gives up on Redis and exits within this.
STOPS_WITHIN = 15


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def own_worker(turn_stack: TurnStack, own_redis: RedisServer) -> Worker:
    stack = TurnStack(turn_stack.database_url, turn_stack.devstack_url, own_redis.url)
    return Worker(stack, f"arq:queue:test-{RUN_ID}-{uuid.uuid4().hex[:8]}")


@pytest.fixture
async def own_inbox(own_worker: Worker) -> AsyncIterator[WebhookClient]:
    stack = own_worker.stack
    client, close = await open_webhook_client(
        settings_for(stack.devstack_url, stack.redis_url, own_worker.queue_name)
    )
    try:
        yield client
    finally:
        await close()


class LogLines:
    """The worker's stderr, read as it comes (the JSON events; arq's start-up lines skipped)."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stderr is not None
        self._stream = proc.stderr
        self.events: list[dict[str, object]] = []
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        while line := await self._stream.readline():
            text = line.decode(errors="replace")
            if text.startswith("{"):
                self.events.append(json.loads(text))

    def count(self, event: str, level: str) -> int:
        return sum(1 for e in self.events if e["event"] == event and e["level"] == level)


async def _answered(whatsapp: WhatsAppRecorder, phone: str, n: int) -> None:
    async def replied() -> bool:
        return len(await whatsapp.texts(phone)) >= n

    await eventually(replied, within=20)


async def test_the_worker_outlives_two_redis_restarts_and_still_answers(
    turn_db: asyncpg.Pool,
    own_redis: RedisServer,
    own_worker: Worker,
    own_inbox: WebhookClient,
    whatsapp: WhatsAppRecorder,
) -> None:
    ws = await make_workspace(turn_db)
    phone = wa.customer_phone()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "arq",
        "jobs.worker.WorkerSettings",
        env=own_worker.env(BRIDGE_LOG_LEVEL="INFO"),
        stderr=asyncio.subprocess.PIPE,
    )
    logs = LogLines(proc)
    try:
        await say(own_inbox, ws.phone_number_id, phone, "hola")
        await _answered(whatsapp, phone, 1)

        for restart in (1, 2):
            own_redis.stop()
            await asyncio.sleep(OUTAGE_SECONDS)
            own_redis.start()

            async def back(restart: int = restart) -> bool:
                assert proc.returncode is None, f"the worker ended at restart {restart}"
                return logs.count("jobs.redis.back", "info") >= restart

            await eventually(back, within=15)

        assert logs.count("jobs.redis.unavailable", "warning") >= 2
        # A customer who writes after the restarts is answered by the same process.
        await say(own_inbox, ws.phone_number_id, phone, "sigues ahí?")
        await _answered(whatsapp, phone, 2)
        assert proc.returncode is None

        # SIGTERM while Redis is away: the process ends, it does not wait for Redis forever.
        own_redis.stop()
        await asyncio.sleep(OUTAGE_SECONDS)
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), STOPS_WITHIN)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await logs.task
