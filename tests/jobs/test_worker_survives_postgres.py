"""The real worker (`arq jobs.worker.WorkerSettings`) outlives Postgres restarts: its own cluster
is restarted fast (connections closed) and immediate (the server killed, recovery on start) while
the worker runs — while a turn's reply waits for its delay, holding the conversation's lock, and
while a reply is in flight — and the same process answers a customer who writes afterwards,
without sending a reply twice or calling a delivered one unknown."""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from bench.soak_services import PostgresCluster
from bridge import migrations
from tests.factories import whatsapp as wa
from tests.fixtures.devstack import start_devstack, stop_process
from tests.fixtures.postgres import RUN_ID
from tests.fixtures.webhook import WebhookClient, open_webhook_client, settings_for
from tests.fixtures.worker import TurnStack, WhatsAppRecorder, Worker, eventually, make_workspace
from tests.jobs.turns import conversation, say


@pytest.fixture
async def own_stack(redis_url: str) -> AsyncIterator[tuple[PostgresCluster, TurnStack]]:
    cluster = PostgresCluster()
    proc = None
    try:
        await asyncio.to_thread(cluster.start)
        await cluster.wait_ready()
        await migrations.apply(cluster.url, seed=False)
        proc, devstack_url = await start_devstack(cluster.url)
        yield cluster, TurnStack(cluster.url, devstack_url, redis_url)
    finally:
        if proc is not None:
            await stop_process(proc)
        await asyncio.to_thread(cluster.stop)


async def test_the_worker_outlives_postgres_restarts_and_still_answers(
    own_stack: tuple[PostgresCluster, TurnStack],
) -> None:
    cluster, stack = own_stack
    worker = Worker(stack, f"arq:queue:test-{RUN_ID}-{uuid.uuid4().hex[:8]}")
    db = await asyncpg.create_pool(cluster.url, min_size=1, max_size=2)
    client, close = await open_webhook_client(
        settings_for(stack.devstack_url, stack.redis_url, worker.queue_name)
    )
    whatsapp = WhatsAppRecorder(stack.devstack_url)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "arq", "jobs.worker.WorkerSettings", env=worker.env()
    )
    try:
        ws = await make_workspace(db, response_speed=1.0)
        phone = wa.customer_phone()
        await _say(client, ws.phone_number_id, phone, "hola")
        await _replies(whatsapp, phone, 1)

        # A restart while a turn holds the conversation, its reply waiting 2 s to go out.
        await _say(client, ws.phone_number_id, phone, "otra #delay=2000")
        conv = await conversation(db, ws.id, phone)
        await _until_locked(db, conv)
        await db.close()
        for mode in ("fast", "immediate"):
            await asyncio.to_thread(cluster.restart, mode)
            await cluster.wait_ready()
            assert proc.returncode is None, f"the worker ended at the {mode} restart"
        db = await asyncpg.create_pool(cluster.url, min_size=1, max_size=2)

        # The waiting turn lost its lock and was retried: its reply goes out once.
        await _replies(whatsapp, phone, 2, within=30)
        # A customer who writes after the restarts is answered by the same process.
        await _say(client, ws.phone_number_id, phone, "sigues ahí?")
        await _replies(whatsapp, phone, 3, within=30)

        # The database goes down while a reply is in flight (WhatsApp answers after 2 s) and
        # comes back 2 s after the answer: the outcome is recorded once the database is back, a
        # delivered reply, not one of unknown fate.
        await whatsapp.fault(kind="timeout", seconds=2, then="answer", to=phone)
        await _say(client, ws.phone_number_id, phone, "y el envío?")
        await _until_sending(db, conv)
        await db.close()
        await asyncio.to_thread(cluster.down, "immediate")
        await asyncio.sleep(4)
        await asyncio.to_thread(cluster.up)
        await cluster.wait_ready()
        db = await asyncpg.create_pool(cluster.url, min_size=1, max_size=2)
        await _replies(whatsapp, phone, 4, within=30)

        async def recorded() -> bool:
            return not await _statuses(db, conv, ("pending", "sending"))

        await eventually(recorded, within=30)
        assert await _statuses(db, conv, ("unknown", "failed")) == []
        assert await db.fetchval("select count(*) from public.tasks") == 0
        assert proc.returncode is None
        texts = await whatsapp.texts(phone)
        assert len(texts) == len(set(texts)) == 4, texts
    finally:
        await stop_process(proc)
        await close()
        await whatsapp.aclose()
        await db.close()


async def test_a_worker_started_while_postgres_is_down_waits_for_it(
    own_stack: tuple[PostgresCluster, TurnStack],
) -> None:
    cluster, stack = own_stack
    worker = Worker(stack, f"arq:queue:test-{RUN_ID}-{uuid.uuid4().hex[:8]}")
    client, close = await open_webhook_client(
        settings_for(stack.devstack_url, stack.redis_url, worker.queue_name)
    )
    whatsapp = WhatsAppRecorder(stack.devstack_url)
    await asyncio.to_thread(cluster.down, "fast")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "arq", "jobs.worker.WorkerSettings", env=worker.env()
    )
    try:
        await asyncio.sleep(3)
        assert proc.returncode is None, "the worker ended while Postgres was down"
        await asyncio.to_thread(cluster.up)
        await cluster.wait_ready()
        db = await asyncpg.create_pool(cluster.url, min_size=1, max_size=2)
        try:
            ws = await make_workspace(db)
        finally:
            await db.close()
        phone = wa.customer_phone()
        await _say(client, ws.phone_number_id, phone, "hola")
        await _replies(whatsapp, phone, 1, within=30)
        assert proc.returncode is None
    finally:
        await stop_process(proc)
        await close()
        await whatsapp.aclose()


async def _say(client: WebhookClient, pnid: str, phone: str, text: str) -> None:
    # The webhook answers 503 while the database restarts (the provider retries): so do we.
    for _ in range(100):
        try:
            await say(client, pnid, phone, text)
            return
        except AssertionError:
            await asyncio.sleep(0.2)
    raise AssertionError("the webhook never stored the message")


async def _replies(whatsapp: WhatsAppRecorder, phone: str, n: int, within: float = 20) -> None:
    async def replied() -> bool:
        return len(await whatsapp.texts(phone)) >= n

    await eventually(replied, within=within)


async def _until_sending(db: asyncpg.Pool, conv: uuid.UUID) -> None:
    async def sending() -> bool:
        return bool(await _statuses(db, conv, ("sending",)))

    await eventually(sending, within=10)


async def _statuses(db: asyncpg.Pool, conv: uuid.UUID, statuses: tuple[str, ...]) -> list[str]:
    rows = await db.fetch(
        "select status from public.messages where conversation_id = $1"
        " and direction = 'outbound' and status = any($2::text[])",
        conv,
        list(statuses),
    )
    return [r["status"] for r in rows]


async def _until_locked(db: asyncpg.Pool, conv: uuid.UUID) -> None:
    async def locked() -> bool:
        return bool(
            await db.fetchval(
                "select exists (select 1 from pg_locks where locktype = 'advisory' and granted"
                " and (classid::bigint << 32 | objid::bigint) = private.conversation_lock_key($1))",
                conv,
            )
        )

    await eventually(locked, within=10)
