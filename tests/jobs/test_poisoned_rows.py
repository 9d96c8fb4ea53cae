"""One tenant poisons its rows (times Python cannot hold, contents that are not objects, megabyte
texts, a creation time the database cannot compute with), more conversations of them than the
worker has lock connections; the real arq worker keeps answering another tenant's customers
within a second, answers the poisoned conversations too, and still stops on SIGTERM. Tenant A
also runs the sales engine with patterns a backtracking engine takes exponential time on, and its
customers send the texts that trigger them."""

from __future__ import annotations

import asyncio
import json
import signal
import time
import uuid

import asyncpg

from tests.factories import whatsapp as wa
from tests.fixtures.webhook import WebhookClient
from tests.fixtures.worker import WhatsAppRecorder, Worker, eventually, make_workspace
from tests.jobs.poison import POISONS, Poison, poisoned_conversation
from tests.jobs.turns import say, texts_sent

MAX_JOBS = 4  # the worker's lock pool holds MAX_JOBS + 2 connections
JOB_TIMEOUT = 20


HOSTILE_PATTERNS = [r"^(a+)+$", r"^(\w+\s?)*$", r"(x+x+)+y"]
HOSTILE_TEXTS = ["a" * 40 + "!", "palabra " * 30 + "!", "x" * 5000]


async def _poison_tenant(db: asyncpg.Pool) -> tuple[list[uuid.UUID], uuid.UUID]:
    """Tenant A's poisoned conversations (three of each poison, and its sales playbook's hostile
    patterns met by the texts that trigger them), and one whose creation time makes the
    database's own arithmetic fail (it can only fail, never block the others)."""
    ws = await make_workspace(db)
    poisoned = [await poisoned_conversation(db, ws, p) for p in POISONS * 3]
    sales = await make_workspace(db, agent_id="somnio-sales-v1")
    await db.execute(
        "insert into public.agent_intents (agent_id, workspace_id, intent, patterns)"
        " values ('somnio-sales-v1', $1, 'precio', $2)",
        sales.id,
        HOSTILE_PATTERNS,
    )
    for text in HOSTILE_TEXTS * 2:
        poison = Poison("hostile_pattern_text", content=json.dumps({"body": text}))
        poisoned.append(await poisoned_conversation(db, sales, poison))
    broken = await poisoned_conversation(db, ws, Poison("created_at_minus_infinity"))
    await db.execute(
        "update public.messages set created_at = '-infinity' where conversation_id = $1", broken
    )
    return poisoned, broken


async def test_a_tenants_poisoned_rows_never_stop_the_worker_answering_others(
    turn_db: asyncpg.Pool, inbox: WebhookClient, worker: Worker, whatsapp: WhatsAppRecorder
) -> None:
    poisoned, _ = await _poison_tenant(turn_db)
    # The sweeper finds every poisoned conversation as soon as the worker starts.
    proc = await worker.start(
        JOBS_MAX_JOBS=str(MAX_JOBS),
        JOBS_SWEEP_AFTER_SECONDS="0",
        JOBS_JOB_TIMEOUT_SECONDS=str(JOB_TIMEOUT),
    )
    try:

        async def taken() -> bool:
            count: int = await turn_db.fetchval(
                "select count(*) from public.conversation_turn_fences"
                " where conversation_id = any($1::uuid[])",
                poisoned,
            )
            return count >= MAX_JOBS + 2

        await eventually(taken, within=30)

        other = await make_workspace(turn_db)
        for _ in range(3):
            phone = wa.customer_phone()
            started = time.monotonic()
            await say(inbox, other.phone_number_id, phone, "hola, ¿tienen envíos?")

            async def answered(phone: str = phone) -> bool:
                return await texts_sent(whatsapp, phone, 1)

            await eventually(answered, within=1.0)
            assert time.monotonic() - started < 1.5

        async def poison_handled() -> bool:
            left: int = await turn_db.fetchval(
                "select count(*) from public.messages where conversation_id = any($1::uuid[])"
                " and direction = 'inbound' and not processed_by_agent",
                poisoned,
            )
            return left == 0

        await eventually(poison_handled, within=30)
        answered_poison: int = await turn_db.fetchval(
            "select count(distinct conversation_id) from public.messages"
            " where conversation_id = any($1::uuid[]) and direction = 'outbound'",
            poisoned,
        )
        assert answered_poison == len(poisoned)

        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), JOB_TIMEOUT) is not None
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
