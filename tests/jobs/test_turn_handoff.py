"""Handoff to a human: asked for by the engine, or forced by an engine that keeps failing or does
not exist; concurrent handoffs go to different agents in rotation."""

from __future__ import annotations

import asyncpg

from tests.factories import whatsapp as wa
from tests.fixtures.webhook import WebhookClient
from tests.fixtures.worker import WhatsAppRecorder, Worker, make_workspace
from tests.jobs.turns import conversation, outbound, say


async def test_handoff_turns_the_bot_off_creates_an_assigned_task_and_sends_the_message(
    turn_db: asyncpg.Pool,
    inbox: WebhookClient,
    worker: Worker,
    whatsapp: WhatsAppRecorder,
) -> None:
    ws = await make_workspace(turn_db, handoff_message="Ya te comunico con un asesor")
    phone = wa.customer_phone()
    await say(inbox, ws.phone_number_id, phone, "quiero hablar con un humano")
    await turn_db.execute(
        "update public.conversations set agent_crm = true where workspace_id = $1", ws.id
    )
    assert await worker.burst() == 0

    conv = await conversation(turn_db, ws.id, phone)
    row = await turn_db.fetchrow("select * from public.conversations where id = $1", conv)
    assert row is not None
    assert (row["agent_conversational"], row["agent_crm"]) == (False, True)
    task = await turn_db.fetchrow("select * from public.tasks where conversation_id = $1", conv)
    assert task is not None
    assert (task["priority"], task["status"], task["type"]) == ("high", "pending", "handoff")
    assert task["contact_id"] == row["contact_id"] is not None
    assert task["assigned_to"] == ws.agents[0]
    assert row["assigned_to"] == ws.agents[0]
    session = await turn_db.fetchrow(
        "select * from public.agent_sessions where conversation_id = $1", conv
    )
    assert session is not None
    assert session["status"] == "handed_off"
    assert await whatsapp.texts(phone) == ["Ya te comunico con un asesor"]
    [message] = await outbound(turn_db, conv)
    assert (message["outbox_kind"], message["sent_by_agent"], message["status"]) == (
        "handoff",
        True,
        "sent",
    )

    # The bot stays silent while off...
    await say(inbox, ws.phone_number_id, phone, "¿hola?")
    assert await worker.burst() == 0
    assert len(await whatsapp.texts(phone)) == 1
    # ...and answers again, in a fresh session, once a human turns it back on.
    await turn_db.execute(
        "update public.conversations set agent_conversational = null where id = $1", conv
    )
    await say(inbox, ws.phone_number_id, phone, "sigo aquí")
    assert await worker.burst() == 0
    assert (await whatsapp.texts(phone))[-1] == "Recibido (1): sigo aquí"
    statuses = [
        r["status"]
        for r in await turn_db.fetch(
            "select status from public.agent_sessions where conversation_id = $1 order by created_at",
            conv,
        )
    ]
    assert statuses == ["handed_off", "active"]


async def test_an_engine_that_keeps_failing_is_retried_twice_then_hands_off(
    turn_db: asyncpg.Pool,
    inbox: WebhookClient,
    worker: Worker,
    whatsapp: WhatsAppRecorder,
) -> None:
    ws = await make_workspace(turn_db)
    phone = wa.customer_phone()
    await say(inbox, ws.phone_number_id, phone, "esto falla #fail")
    assert await worker.burst() == 0
    conv = await conversation(turn_db, ws.id, phone)
    task = await turn_db.fetchrow("select * from public.tasks where conversation_id = $1", conv)
    assert task is not None
    assert "agent failed" in task["description"]
    # No reply was ever generated; the customer gets the handoff message, once.
    assert await whatsapp.texts(phone) == ["Regálame 1 min, ya te comunico con un asesor"]
    assert (
        await turn_db.fetchval(
            "select count(*) from public.agent_turns t join public.agent_sessions s"
            " on s.id = t.session_id where s.conversation_id = $1",
            conv,
        )
        == 0
    )


async def test_unknown_engine_hands_off_instead_of_crashing(
    turn_db: asyncpg.Pool,
    inbox: WebhookClient,
    worker: Worker,
    whatsapp: WhatsAppRecorder,
) -> None:
    ws = await make_workspace(turn_db, agent_id="no-such-engine")
    phone = wa.customer_phone()
    await say(inbox, ws.phone_number_id, phone, "hola")
    assert await worker.burst() == 0
    conv = await conversation(turn_db, ws.id, phone)
    task = await turn_db.fetchrow("select * from public.tasks where conversation_id = $1", conv)
    assert task is not None
    assert "no-such-engine" in task["description"]
    assert len(await whatsapp.texts(phone)) == 1


async def test_two_concurrent_handoffs_get_different_assignees_in_turn(
    turn_db: asyncpg.Pool,
    inbox: WebhookClient,
    worker: Worker,
) -> None:
    ws = await make_workspace(turn_db, online_agents=3)
    a, b = wa.customer_phone(), wa.customer_phone()
    await say(inbox, ws.phone_number_id, a, "#handoff")
    await say(inbox, ws.phone_number_id, b, "#handoff")
    assert await worker.burst(JOBS_MAX_JOBS="10") == 0
    tasks = await turn_db.fetch(
        "select assigned_to from public.tasks where workspace_id = $1 order by created_at", ws.id
    )
    assignees = [t["assigned_to"] for t in tasks]
    assert len(assignees) == 2
    assert len(set(assignees)) == 2
    # The first two in rotation (never-assigned first, ties by user id), whichever handoff won the
    # race; a task's created_at is its transaction's start, not the order of assignment.
    assert sorted(assignees) == ws.agents[:2]
