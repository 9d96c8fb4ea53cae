"""The sweeper finds stored inbound messages that never got a job and enqueues them."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from datetime import timedelta

import asyncpg
from arq import create_pool
from redis.asyncio import Redis

from bridge.queue import JobQueue, redis_settings, sweep_job_id
from jobs.sweeper import close_idle_sessions, requeue_stalled_outbox, requeue_unprocessed
from tests.factories import whatsapp as wa
from tests.fixtures.devstack import free_port
from tests.fixtures.locks import open_turn_locks
from tests.fixtures.webhook import Channel, open_webhook_client, settings_for


async def test_message_stored_while_redis_was_down_is_enqueued_once_redis_is_back(
    devstack_url: str,
    redis_url: str,
    queue_name: str,
    make_channel: Callable[..., Awaitable[Channel]],
    db: asyncpg.Pool,
) -> None:
    channel = await make_channel()
    sender = wa.customer_phone()
    now = int(time.time())
    msgs = [wa.text("uno", sender=sender, ts=now - 1), wa.text("dos", sender=sender, ts=now)]
    down = settings_for(devstack_url, f"redis://127.0.0.1:{free_port()}/0", queue_name)
    client, close = await open_webhook_client(down)
    try:
        response = await client.post(wa.body(wa.change(channel.phone_number_id, messages=msgs)))
        assert response.status_code == 200
    finally:
        await close()
    first = await db.fetchrow(
        "select id, conversation_id from public.messages where wamid = $1", msgs[0]["id"]
    )
    assert first is not None

    redis = await create_pool(redis_settings(redis_url), default_queue_name=queue_name)
    try:
        # Too fresh for the sweeper's threshold: left alone.
        assert (
            await requeue_unprocessed(
                db, JobQueue(redis, queue_name), older_than=timedelta(hours=1)
            )
            == 0
        )
        queued = await requeue_unprocessed(db, JobQueue(redis, queue_name), older_than=timedelta(0))
        assert queued >= 1
        job_id = sweep_job_id(str(first["id"]))
        raw = Redis.from_url(redis_url)
        assert await raw.exists(f"arq:job:{job_id}")
        await raw.aclose()
        # One job per conversation: the second message rides along with the first.
        second = await db.fetchval("select id from public.messages where wamid = $1", msgs[1]["id"])
        raw = Redis.from_url(redis_url)
        assert not await raw.exists(f"arq:job:{sweep_job_id(str(second))}")
        await raw.aclose()
    finally:
        await redis.aclose()


async def test_stalled_outbox_rows_get_a_job_for_their_conversation(
    redis_url: str,
    queue_name: str,
    make_channel: Callable[..., Awaitable[Channel]],
    db: asyncpg.Pool,
    database_url: str,
) -> None:
    channel = await make_channel()
    conv = await db.fetchval(
        "insert into public.conversations (workspace_id, phone_number_id, phone)"
        " values ($1, $2, $3) returning id",
        channel.workspace_id,
        channel.phone_number_id,
        wa.customer_phone(),
    )
    await db.execute(
        "insert into public.messages (workspace_id, conversation_id, direction, type, content,"
        " status, sent_by_agent, created_at) values ($1, $2, 'outbound', 'text', '{}', 'pending',"
        " true, now() - interval '10 minutes')",
        channel.workspace_id,
        conv,
    )
    redis = await create_pool(redis_settings(redis_url), default_queue_name=queue_name)
    raw = Redis.from_url(redis_url)
    job = f"arq:job:{sweep_job_id(f'outbox:{conv}')}"
    try:
        # A turn holds the conversation (its replies wait for their delays): not stalled.
        async with open_turn_locks(database_url) as locks:
            assert await locks.session.lock(conv, within=5) is not None
            await requeue_stalled_outbox(
                db, JobQueue(redis, queue_name), older_than=timedelta(minutes=1)
            )
            assert not await raw.exists(job)
        # Its worker died (the session ended): the rows are stalled.
        assert (
            await requeue_stalled_outbox(
                db, JobQueue(redis, queue_name), older_than=timedelta(minutes=1)
            )
            >= 1
        )
        assert await raw.exists(job)
    finally:
        await raw.aclose()
        await redis.aclose()


async def test_idle_sessions_are_closed_so_a_returning_customer_starts_fresh(
    make_channel: Callable[..., Awaitable[Channel]],
    db: asyncpg.Pool,
    database_url: str,
) -> None:
    channel = await make_channel()
    conv = await db.fetchval(
        "insert into public.conversations (workspace_id, phone_number_id, phone)"
        " values ($1, $2, $3) returning id",
        channel.workspace_id,
        channel.phone_number_id,
        wa.customer_phone(),
    )
    idle, fresh = (
        await db.fetchval(
            "insert into public.agent_sessions (workspace_id, agent_id, conversation_id,"
            " last_activity_at) values ($1, 'a', $2, now() - interval '2 days') returning id",
            channel.workspace_id,
            conv,
        ),
        await db.fetchval(
            "insert into public.agent_sessions (workspace_id, agent_id, conversation_id)"
            " values ($1, 'b', $2) returning id",
            channel.workspace_id,
            conv,
        ),
    )
    assert await close_idle_sessions(db, idle_for=timedelta(hours=24)) >= 1
    statuses = {
        r["id"]: r["status"]
        for r in await db.fetch(
            "select id, status from public.agent_sessions where id = any($1)", [idle, fresh]
        )
    }
    assert statuses == {idle: "closed", fresh: "active"}
