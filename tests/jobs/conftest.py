"""Fixtures of the agent-turn tests: their own database and devstack, torn down when this package
is done (so the worker's sweeper only sees these conversations, and the connections are freed
for the tests that follow)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from tests.fixtures.devstack import start_devstack, stop_process
from tests.fixtures.postgres import RUN_ID, create_database, drop_database
from tests.fixtures.webhook import WebhookClient, open_webhook_client, settings_for
from tests.fixtures.worker import TurnStack, TypingWatcher, WhatsAppRecorder, Worker


@pytest.fixture(scope="package")
async def turn_stack(redis_url: str) -> AsyncIterator[TurnStack]:
    from bridge import migrations

    name = f"wab_test_{RUN_ID}_turns"
    url = await create_database(name)
    proc = None
    try:
        await migrations.apply(url, seed=True)
        proc, devstack_url = await start_devstack(url)
        yield TurnStack(url, devstack_url, redis_url)
    finally:
        if proc is not None:
            await stop_process(proc)
        await drop_database(name)


@pytest.fixture(scope="package")
async def turn_db(turn_stack: TurnStack) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(turn_stack.database_url, min_size=1, max_size=10)
    assert pool is not None
    yield pool
    await pool.close()


@pytest.fixture
def worker(turn_stack: TurnStack) -> Worker:
    return Worker(turn_stack, f"arq:queue:test-{RUN_ID}-{uuid.uuid4().hex[:8]}")


@pytest.fixture
async def inbox(turn_stack: TurnStack, worker: Worker) -> AsyncIterator[WebhookClient]:
    """The webhook API writing into the turn stack and ringing this test's worker queue."""
    client, close = await open_webhook_client(
        settings_for(turn_stack.devstack_url, turn_stack.redis_url, worker.queue_name)
    )
    try:
        yield client
    finally:
        await close()


@pytest.fixture
async def whatsapp(turn_stack: TurnStack) -> AsyncIterator[WhatsAppRecorder]:
    recorder = WhatsAppRecorder(turn_stack.devstack_url)
    yield recorder
    await recorder.aclose()


@pytest.fixture
async def typing_watcher(turn_stack: TurnStack) -> AsyncIterator[TypingWatcher]:
    watcher = TypingWatcher(turn_stack.devstack_url)
    yield watcher
    await watcher.aclose()
