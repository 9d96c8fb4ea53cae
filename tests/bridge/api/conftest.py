"""The webhook API's tests that follow a message on to the real arq worker: a worker on a queue
of its own, the webhook that rings it, and the WhatsApp stand-in's record of what was sent."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from tests.fixtures.postgres import RUN_ID
from tests.fixtures.webhook import WebhookClient, open_webhook_client, settings_for
from tests.fixtures.worker import TurnStack, WhatsAppRecorder, Worker


@pytest.fixture
def worker(database_url: str, devstack_url: str, redis_url: str) -> Worker:
    stack = TurnStack(database_url, devstack_url, redis_url)
    return Worker(stack, f"arq:queue:test-{RUN_ID}-{uuid.uuid4().hex[:8]}")


@pytest.fixture
async def inbox(worker: Worker) -> AsyncIterator[WebhookClient]:
    stack = worker.stack
    client, close = await open_webhook_client(
        settings_for(stack.devstack_url, stack.redis_url, worker.queue_name)
    )
    try:
        yield client
    finally:
        await close()


@pytest.fixture
async def whatsapp(devstack_url: str) -> AsyncIterator[WhatsAppRecorder]:
    recorder = WhatsAppRecorder(devstack_url)
    yield recorder
    await recorder.aclose()
