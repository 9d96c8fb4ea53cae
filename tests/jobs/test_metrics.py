"""The worker's /metrics (`jobs.metrics`): after a turn, the turn with its duration, the send by
outcome, the jobs' timings and the queue; behind BRIDGE_METRICS_TOKEN when that is set."""

from __future__ import annotations

import asyncpg
import httpx

from tests.factories import whatsapp as wa
from tests.fixtures.devstack import free_port, wait_http
from tests.fixtures.metrics import Samples, scrape, value
from tests.fixtures.webhook import WebhookClient
from tests.fixtures.worker import WhatsAppRecorder, Worker, eventually, make_workspace
from tests.jobs.turns import say

TOKEN = "worker-metrics-token"


async def test_the_worker_exposes_a_turn_its_duration_and_its_send(
    turn_db: asyncpg.Pool,
    inbox: WebhookClient,
    worker: Worker,
    whatsapp: WhatsAppRecorder,
) -> None:
    ws = await make_workspace(turn_db)
    phone = wa.customer_phone()
    port = free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    proc = await worker.start(JOBS_METRICS_PORT=str(port), BRIDGE_METRICS_TOKEN=TOKEN)
    try:
        await wait_http(url)
        async with httpx.AsyncClient() as client:
            refused = await client.get(url)
        assert refused.status_code == 401
        # The package's database is shared: the start-up sweep may first resume what an earlier
        # test's worker left in an outbox. This test counts what its own turn adds.
        before: Samples = {}

        async def settled() -> bool:
            nonlocal before
            before = await scrape(url, TOKEN)
            return (value(before, "jobs_job_duration_seconds_count") or 0) >= 1 and value(
                before, "jobs_queue_depth"
            ) == 0

        await eventually(settled, within=20)

        await say(inbox, ws.phone_number_id, phone, "hola")
        await eventually(lambda: _texts_sent(whatsapp, phone), within=20)
        samples: Samples = {}

        def added(name: str, **labels: str) -> float:
            return (value(samples, name, **labels) or 0) - (value(before, name, **labels) or 0)

        async def turn_counted() -> bool:
            nonlocal samples
            samples = await scrape(url, TOKEN)
            return added("jobs_turns_total") == 1

        await eventually(turn_counted)
    finally:
        proc.terminate()
        await proc.wait()
    assert added("jobs_turn_duration_seconds_count") == 1
    assert added("jobs_turn_duration_seconds_bucket", le="+Inf") == 1
    assert added("jobs_turn_duration_seconds_bucket", le="300.0") == 1
    assert added("jobs_sends_total", outcome="sent") == 1
    assert added("jobs_sends_total", outcome="unknown") == 0
    assert added("jobs_handoffs_total", reason="agent_failed") == 0
    assert added("jobs_handoffs_total", reason="engine_request") == 0
    assert added("jobs_lock_busy_total") == 0
    # The turn's job, and the sweeper's cron run at start-up.
    assert (value(samples, "jobs_job_duration_seconds_count") or 0) >= 1
    assert (value(samples, "jobs_job_wait_seconds_count") or 0) >= 1
    assert value(samples, "jobs_queue_depth") is not None
    assert value(samples, "jobs_queue_due") is not None


async def _texts_sent(whatsapp: WhatsAppRecorder, phone: str) -> bool:
    return len(await whatsapp.texts(phone)) == 1


async def test_a_taken_port_costs_the_metrics_not_the_worker(
    turn_db: asyncpg.Pool,
    inbox: WebhookClient,
    worker: Worker,
    whatsapp: WhatsAppRecorder,
) -> None:
    ws = await make_workspace(turn_db)
    phone = wa.customer_phone()
    port = free_port()
    first = await worker.start(JOBS_METRICS_PORT=str(port))
    second = await worker.start(JOBS_METRICS_PORT=str(port))
    try:
        await wait_http(f"http://127.0.0.1:{port}/metrics")
        await say(inbox, ws.phone_number_id, phone, "hola")
        await eventually(lambda: _texts_sent(whatsapp, phone), within=20)
        assert second.returncode is None
    finally:
        for proc in (first, second):
            proc.terminate()
            await proc.wait()
