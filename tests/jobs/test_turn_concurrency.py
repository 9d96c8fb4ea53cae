"""Turns under concurrency: one conversation's messages handled one turn at a time by competing
workers, two hundred conversations at once, queued jobs withdrawn once their messages are
answered, and arq's health check while the worker runs."""

from __future__ import annotations

import asyncio
import sys

import asyncpg
from arq import create_pool

from bridge.queue import redis_settings
from tests.factories import whatsapp as wa
from tests.fixtures.webhook import WebhookClient
from tests.fixtures.worker import WhatsAppRecorder, Worker, content_body, eventually, make_workspace
from tests.jobs.turns import all_processed, conversation, say, settled


async def test_twenty_messages_to_one_conversation_are_handled_one_turn_at_a_time(
    turn_db: asyncpg.Pool,
    inbox: WebhookClient,
    worker: Worker,
    whatsapp: WhatsAppRecorder,
) -> None:
    ws = await make_workspace(turn_db)
    phone = wa.customer_phone()
    proc_a = await worker.start()
    proc_b = await worker.start()  # two workers compete for the same conversation
    try:
        await asyncio.gather(
            *(say(inbox, ws.phone_number_id, phone, f"m{i:02d}") for i in range(20))
        )
        conv = await conversation(turn_db, ws.id, phone)
        await eventually(lambda: all_processed(turn_db, conv), within=30)
        await eventually(lambda: settled(turn_db, conv), within=30)
    finally:
        for proc in (proc_a, proc_b):
            proc.terminate()
            await proc.wait()
    # Every inbound message was consumed by exactly one turn, and turns never overlapped.
    turns = await turn_db.fetch(
        """
        select t.id, t.created_at,
               (select max(m.created_at) from public.messages m where m.agent_turn_id = t.id
                 and m.direction = 'outbound') as last_send,
               (select count(*) from public.messages m where m.agent_turn_id = t.id
                 and m.direction = 'inbound') as consumed
          from public.agent_turns t join public.agent_sessions s on s.id = t.session_id
         where s.conversation_id = $1 and t.role = 'assistant' order by t.turn_number
        """,
        conv,
    )
    assert sum(t["consumed"] for t in turns) == 20
    texts = await whatsapp.texts(phone)
    assert len(texts) == len(turns)  # one reply per turn, none twice
    assert len(set(texts)) == len(texts)
    # In order: successive replies quote the messages in the order they were stored.
    quoted = [part for text in texts for part in text.split(": ", 1)[1].split(" | ")]
    stored = [
        content_body(r)
        for r in await turn_db.fetch(
            "select content from public.messages where conversation_id = $1 and direction = 'inbound'"
            " order by timestamp, received_seq",
            conv,
        )
    ]
    assert quoted == stored
    assert sorted(quoted) == [f"m{i:02d}" for i in range(20)]


async def test_two_hundred_conversations_in_parallel_are_all_answered(
    turn_db: asyncpg.Pool,
    inbox: WebhookClient,
    worker: Worker,
    whatsapp: WhatsAppRecorder,
) -> None:
    ws = await make_workspace(turn_db)
    phones = [wa.customer_phone() for _ in range(200)]
    for start in range(0, 200, 50):
        await inbox.post(
            wa.body(
                wa.change(
                    ws.phone_number_id,
                    messages=[wa.text(f"hola {p}", sender=p) for p in phones[start : start + 50]],
                )
            )
        )
    assert await worker.burst(within=120) == 0
    answered = await turn_db.fetchval(
        "select count(distinct conversation_id) from public.messages where workspace_id = $1"
        " and direction = 'outbound' and status = 'sent' and sent_by_agent",
        ws.id,
    )
    assert answered == 200
    unprocessed = await turn_db.fetchval(
        "select count(*) from public.messages where workspace_id = $1 and direction = 'inbound'"
        " and not processed_by_agent",
        ws.id,
    )
    assert unprocessed == 0


async def test_arq_health_check_passes_while_the_worker_runs(worker: Worker) -> None:
    proc = await worker.start()
    try:
        await asyncio.sleep(1.5)
        check = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "arq", "jobs.worker.WorkerSettings", "--check", env=worker.env()
        )
        assert await check.wait() == 0
    finally:
        proc.terminate()
        await proc.wait()


async def test_a_turn_withdraws_the_queued_jobs_of_the_messages_it_answered(
    turn_db: asyncpg.Pool,
    inbox: WebhookClient,
    worker: Worker,
    whatsapp: WhatsAppRecorder,
) -> None:
    ws = await make_workspace(turn_db)
    phone = wa.customer_phone()
    await say(inbox, ws.phone_number_id, phone, "hola", "quiero info", "¿precio?")
    redis = await create_pool(redis_settings(worker.stack.redis_url))
    try:
        assert await redis.zcard(worker.queue_name) == 3
    finally:
        await redis.aclose()
    # One job at a time: the first job's turn answers all three messages, so the other two
    # jobs are withdrawn before the worker gets to them and never run.
    events = await worker.burst_events(JOBS_MAX_JOBS="1")
    started = [e for e in events if " → " in e and "process_inbound" in e]
    assert len(started) == 1, events
    assert await whatsapp.texts(phone) == ["Recibido (3): hola | quiero info | ¿precio?"]
