"""A tenant's playbook cannot stall the worker every tenant shares: a pattern that takes a
backtracking engine exponential time, and a customer text made to trigger it, leave another
workspace's customer answered at once (the real worker, both turns in flight together)."""

from __future__ import annotations

import asyncio

import asyncpg

from tests.factories import whatsapp as wa
from tests.fixtures.webhook import WebhookClient
from tests.fixtures.worker import WhatsAppRecorder, Worker, eventually, make_workspace
from tests.jobs.turns import say, texts_sent


async def test_a_catastrophic_pattern_in_one_playbook_stalls_nobody(
    turn_db: asyncpg.Pool,
    inbox: WebhookClient,
    worker: Worker,
    whatsapp: WhatsAppRecorder,
) -> None:
    hostile = await make_workspace(turn_db, agent_id="somnio-sales-v1")
    # Written as the workspace's admin could: RE2 matches it in linear time, so it is allowed.
    await turn_db.execute(
        "insert into public.agent_intents (agent_id, workspace_id, intent, patterns)"
        " values ('somnio-sales-v1', $1, 'precio', $2)",
        hostile.id,
        [r"^(a+)+$", r"^(\w+\s?)*$"],
    )
    victim = await make_workspace(turn_db, agent_id="somnio-sales-v1")
    attacker, customer = wa.customer_phone(), wa.customer_phone()
    # Python's `re` needs about 2**40 steps to reject this text against those patterns.
    await say(inbox, hostile.phone_number_id, attacker, "a" * 40 + "!")
    await say(inbox, victim.phone_number_id, customer, "hola, cuánto cuesta?")

    async def priced() -> bool:
        # The answer is several texts in a row: the price is not necessarily the first.
        return any("$77,900" in t for t in await whatsapp.texts(customer))

    proc = await worker.start()
    try:
        started = asyncio.get_running_loop().time()
        try:
            await eventually(priced, within=10)
        except AssertionError:
            raise AssertionError(f"the victim got {await whatsapp.texts(customer)}") from None
        # Both turns are answered, the attacker's too (the patterns simply did not match).
        await eventually(lambda: texts_sent(whatsapp, attacker, 1), within=5)
        assert asyncio.get_running_loop().time() - started < 10
    finally:
        proc.kill()
        await proc.wait()
