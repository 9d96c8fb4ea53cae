"""The agent turn through the real arq worker, the WhatsApp and Realtime stand-ins and Postgres:
each rule of the turn, asserted on database rows, recorded sends and received broadcasts."""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid

import asyncpg
from arq import create_pool
from arq.jobs import Job

from bridge.api.signature import sign
from bridge.queue import inbound_job_id, redis_settings
from tests.factories import whatsapp as wa
from tests.fixtures.devstack import free_port
from tests.fixtures.webhook import APP_SECRET, D360_SECRET, WebhookClient
from tests.fixtures.worker import (
    ACCESS_TOKEN,
    TypingWatcher,
    WhatsAppRecorder,
    Worker,
    content_body,
    eventually,
    make_workspace,
)


async def _say(
    inbox: WebhookClient, pnid: str, phone: str, *texts: str, name: str | None = None
) -> list[str]:
    now = int(time.time())
    msgs = [wa.text(t, sender=phone, ts=now + i) for i, t in enumerate(texts)]
    contacts = [{"profile": {"name": name}, "wa_id": phone}] if name else None
    response = await inbox.post(wa.body(wa.change(pnid, messages=msgs, contacts=contacts)))
    assert response.status_code == 200, response.text
    return [m["id"] for m in msgs]


async def _conversation(db: asyncpg.Pool, workspace_id: uuid.UUID, phone: str) -> uuid.UUID:
    conv: uuid.UUID = await db.fetchval(
        "select id from public.conversations where workspace_id = $1 and phone = $2",
        workspace_id,
        phone,
    )
    assert conv is not None
    return conv


async def _outbound(db: asyncpg.Pool, conv: uuid.UUID) -> list[asyncpg.Record]:
    return await db.fetch(
        "select * from public.messages where conversation_id = $1 and direction = 'outbound'"
        " order by created_at, outbox_position",
        conv,
    )


async def test_a_message_is_answered_with_typing_around_the_reply(
    turn_db: asyncpg.Pool,
    inbox: WebhookClient,
    worker: Worker,
    whatsapp: WhatsAppRecorder,
    typing_watcher: TypingWatcher,
) -> None:
    ws = await make_workspace(turn_db)
    phone = wa.customer_phone()
    [wamid] = await _say(inbox, ws.phone_number_id, phone, "hola", name="Ana")
    conv = await _conversation(turn_db, ws.id, phone)
    await typing_watcher.watch(conv)

    assert await worker.burst() == 0

    assert await whatsapp.texts(phone) == ["Recibido (1): hola"]
    [reply] = await _outbound(turn_db, conv)
    assert (reply["status"], reply["sent_by_agent"], reply["outbox_kind"]) == (
        "sent",
        True,
        "reply",
    )
    sent = await whatsapp.sends(phone)
    assert reply["wamid"] == sent[0]["response"]["body"]["messages"][0]["id"]
    assert sent[0]["headers"].get("authorization") == "Bearer test-graph-token"
    inbound = await turn_db.fetchrow("select * from public.messages where wamid = $1", wamid)
    assert inbound is not None
    assert inbound["processed_by_agent"] is True
    assert inbound["agent_turn_id"] == reply["agent_turn_id"]

    # The contact was created from the profile name and linked.
    contact = await turn_db.fetchrow(
        "select ct.* from public.contacts ct join public.conversations c on c.contact_id = ct.id"
        " where c.id = $1",
        conv,
    )
    assert contact is not None
    assert (contact["name"], contact["phone"]) == ("Ana", phone)

    # Typing: START (with an expiry) before the reply, STOP after.
    await eventually(lambda: _count(typing_watcher, conv, 2))
    start, stop = typing_watcher.events[str(conv)]
    assert start["isTyping"] is True
    assert stop["isTyping"] is False
    assert start["source"] == stop["source"] == "agent"
    assert start["conversationId"] == str(conv)
    assert start["expiresAt"] is not None


async def _count(watcher: TypingWatcher, conv: uuid.UUID, n: int) -> bool:
    return len(watcher.events.get(str(conv), [])) >= n


async def test_a_burst_of_three_messages_gets_one_answer(
    turn_db: asyncpg.Pool,
    inbox: WebhookClient,
    worker: Worker,
    whatsapp: WhatsAppRecorder,
) -> None:
    ws = await make_workspace(turn_db)
    phone = wa.customer_phone()
    await _say(inbox, ws.phone_number_id, phone, "hola", "quiero info", "¿precio?")
    assert await worker.burst() == 0
    assert await whatsapp.texts(phone) == ["Recibido (3): hola | quiero info | ¿precio?"]
    conv = await _conversation(turn_db, ws.id, phone)
    turns = await turn_db.fetchval(
        "select count(*) from public.agent_turns t join public.agent_sessions s"
        " on s.id = t.session_id where s.conversation_id = $1 and t.role = 'assistant'",
        conv,
    )
    assert turns == 1


async def test_agent_disabled_marks_processed_and_sends_nothing(
    turn_db: asyncpg.Pool,
    inbox: WebhookClient,
    worker: Worker,
    whatsapp: WhatsAppRecorder,
) -> None:
    off = await make_workspace(turn_db, enabled=False)
    on = await make_workspace(turn_db)
    cases = {  # phone -> (workspace, conversation override)
        wa.customer_phone(): (off, None),
        wa.customer_phone(): (off, True),  # global off wins over a conversation's true
        wa.customer_phone(): (on, False),  # the conversation's false wins
    }
    for phone, (ws, _) in cases.items():
        await _say(inbox, ws.phone_number_id, phone, "hola")
    for phone, (ws, override) in cases.items():
        await turn_db.execute(
            "update public.conversations set agent_conversational = $3"
            " where workspace_id = $1 and phone = $2",
            ws.id,
            phone,
            override,
        )
    assert await worker.burst() == 0
    for phone, (ws, _) in cases.items():
        assert await whatsapp.sends(phone) == []
        conv = await _conversation(turn_db, ws.id, phone)
        assert await _outbound(turn_db, conv) == []
        assert (
            await turn_db.fetchval(
                "select bool_and(processed_by_agent) from public.messages where conversation_id = $1",
                conv,
            )
            is True
        )


async def test_existing_contact_with_the_same_phone_is_linked_not_duplicated(
    turn_db: asyncpg.Pool,
    inbox: WebhookClient,
    worker: Worker,
) -> None:
    ws = await make_workspace(turn_db)
    phone = wa.customer_phone()
    existing = await turn_db.fetchval(
        "insert into public.contacts (workspace_id, name, phone) values ($1, 'Cliente VIP', $2)"
        " returning id",
        ws.id,
        phone,
    )
    await _say(inbox, ws.phone_number_id, phone, "hola")
    assert await worker.burst() == 0
    conv = await _conversation(turn_db, ws.id, phone)
    assert (
        await turn_db.fetchval("select contact_id from public.conversations where id = $1", conv)
        == existing
    )
    assert (
        await turn_db.fetchval(
            "select count(*) from public.contacts where workspace_id = $1", ws.id
        )
        == 1
    )


async def test_handoff_turns_the_bot_off_creates_an_assigned_task_and_sends_the_message(
    turn_db: asyncpg.Pool,
    inbox: WebhookClient,
    worker: Worker,
    whatsapp: WhatsAppRecorder,
) -> None:
    ws = await make_workspace(turn_db, handoff_message="Ya te comunico con un asesor")
    phone = wa.customer_phone()
    await _say(inbox, ws.phone_number_id, phone, "quiero hablar con un humano")
    await turn_db.execute(
        "update public.conversations set agent_crm = true where workspace_id = $1", ws.id
    )
    assert await worker.burst() == 0

    conv = await _conversation(turn_db, ws.id, phone)
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
    [message] = await _outbound(turn_db, conv)
    assert (message["outbox_kind"], message["sent_by_agent"], message["status"]) == (
        "handoff",
        True,
        "sent",
    )

    # The bot stays silent while off...
    await _say(inbox, ws.phone_number_id, phone, "¿hola?")
    assert await worker.burst() == 0
    assert len(await whatsapp.texts(phone)) == 1
    # ...and answers again, in a fresh session, once a human turns it back on.
    await turn_db.execute(
        "update public.conversations set agent_conversational = null where id = $1", conv
    )
    await _say(inbox, ws.phone_number_id, phone, "sigo aquí")
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
    await _say(inbox, ws.phone_number_id, phone, "esto falla #fail")
    assert await worker.burst() == 0
    conv = await _conversation(turn_db, ws.id, phone)
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
    await _say(inbox, ws.phone_number_id, phone, "hola")
    assert await worker.burst() == 0
    conv = await _conversation(turn_db, ws.id, phone)
    task = await turn_db.fetchrow("select * from public.tasks where conversation_id = $1", conv)
    assert task is not None
    assert "no-such-engine" in task["description"]
    assert len(await whatsapp.texts(phone)) == 1


async def test_throttling_is_retried_and_a_closed_window_is_recorded(
    turn_db: asyncpg.Pool,
    inbox: WebhookClient,
    worker: Worker,
    whatsapp: WhatsAppRecorder,
) -> None:
    ws = await make_workspace(turn_db)
    throttled, closed = wa.customer_phone(), wa.customer_phone()
    await whatsapp.fault(kind="graph_error", code=130429, to=throttled, count=2)
    await whatsapp.fault(kind="graph_error", code=131047, to=closed)
    await _say(inbox, ws.phone_number_id, throttled, "hola")
    await _say(inbox, ws.phone_number_id, closed, "hola #replies=2")
    assert await worker.burst() == 0

    assert await whatsapp.texts(throttled) == ["Recibido (1): hola"]
    assert len(await whatsapp.sends(throttled)) == 3  # two throttled attempts, then sent
    conv = await _conversation(turn_db, ws.id, closed)
    first, second = await _outbound(turn_db, conv)
    assert (first["status"], first["error_code"]) == ("failed", "131047")
    assert second["status"] == "skipped"
    assert "131047" in second["skip_reason"]
    assert len(await whatsapp.sends(closed)) == 1


async def test_ambiguous_send_outcomes_are_never_resent(
    turn_db: asyncpg.Pool,
    inbox: WebhookClient,
    worker: Worker,
    whatsapp: WhatsAppRecorder,
) -> None:
    ws = await make_workspace(turn_db)
    server_error, timeout = wa.customer_phone(), wa.customer_phone()
    await whatsapp.fault(kind="http_error", status=500, to=server_error)
    await whatsapp.fault(kind="timeout", seconds=3, then="answer", to=timeout)
    await _say(inbox, ws.phone_number_id, server_error, "hola")
    await _say(inbox, ws.phone_number_id, timeout, "hola")
    assert await worker.burst(WHATSAPP_SEND_TIMEOUT_SECONDS="1") == 0
    for phone in (server_error, timeout):
        conv = await _conversation(turn_db, ws.id, phone)
        [row] = await _outbound(turn_db, conv)
        assert row["status"] == "unknown", phone
        assert row["send_attempts"] == 1
        assert len(await whatsapp.sends(phone)) == 1
    # Nothing picks them up again later either.
    assert await worker.burst(JOBS_SWEEP_AFTER_SECONDS="0") == 0
    assert len(await whatsapp.sends(server_error)) == 1


async def test_turning_the_agent_off_mid_turn_stops_the_remaining_replies(
    turn_db: asyncpg.Pool,
    inbox: WebhookClient,
    worker: Worker,
    whatsapp: WhatsAppRecorder,
) -> None:
    ws = await make_workspace(turn_db, response_speed=1.0)
    phone = wa.customer_phone()
    await _say(inbox, ws.phone_number_id, phone, "hola #replies=3 #delay=1500")
    conv = await _conversation(turn_db, ws.id, phone)
    proc = await worker.start()
    try:
        await eventually(lambda: _sent_count(whatsapp, phone, 1), within=15)
        # A human writes from the inbox and switches the bot off for this conversation.
        human = await turn_db.fetchval(
            "insert into public.messages (workspace_id, conversation_id, direction, type, content,"
            " status) values ($1, $2, 'outbound', 'text', '{\"body\": \"Hola, soy Laura\"}', 'sent')"
            " returning id",
            ws.id,
            conv,
        )
        await turn_db.execute(
            "update public.conversations set agent_conversational = false where id = $1", conv
        )
        await eventually(lambda: _settled(turn_db, conv), within=15)
    finally:
        proc.terminate()
        await proc.wait()
    assert len(await whatsapp.texts(phone)) == 1
    rows = [r for r in await _outbound(turn_db, conv) if r["id"] != human]
    assert [r["status"] for r in rows] == ["sent", "skipped", "skipped"]
    assert all(r["skip_reason"] == "agent disabled" for r in rows[1:])
    assert (
        await turn_db.fetchval("select sent_by_agent from public.messages where id = $1", human)
        is False
    )
    assert (
        await turn_db.fetchval("select count(*) from public.tasks where conversation_id = $1", conv)
        == 0
    )


async def _sent_count(whatsapp: WhatsAppRecorder, phone: str, n: int) -> bool:
    return len(await whatsapp.texts(phone)) >= n


async def _settled(db: asyncpg.Pool, conv: uuid.UUID) -> bool:
    return not await db.fetchval(
        "select exists (select 1 from public.messages where conversation_id = $1"
        " and status in ('pending', 'sending'))",
        conv,
    )


async def test_a_newer_message_mid_turn_cancels_the_rest_and_is_answered_next(
    turn_db: asyncpg.Pool,
    inbox: WebhookClient,
    worker: Worker,
    whatsapp: WhatsAppRecorder,
) -> None:
    ws = await make_workspace(turn_db, response_speed=1.0)
    phone = wa.customer_phone()
    await _say(inbox, ws.phone_number_id, phone, "hola #replies=3 #delay=1500")
    conv = await _conversation(turn_db, ws.id, phone)
    proc = await worker.start()
    try:
        await eventually(lambda: _sent_count(whatsapp, phone, 1), within=15)
        await _say(inbox, ws.phone_number_id, phone, "otra cosa")
        await eventually(lambda: _sent_count(whatsapp, phone, 2), within=15)
        await eventually(lambda: _settled(turn_db, conv), within=15)
    finally:
        proc.terminate()
        await proc.wait()
    texts = await whatsapp.texts(phone)
    assert texts[0] == "Recibido (1): hola #replies=3 #delay=1500"
    assert texts[-1] == "Recibido (1): otra cosa"
    statuses = [r["status"] for r in await _outbound(turn_db, conv)]
    assert statuses.count("skipped") >= 1
    assert "pending" not in statuses


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
            *(_say(inbox, ws.phone_number_id, phone, f"m{i:02d}") for i in range(20))
        )
        conv = await _conversation(turn_db, ws.id, phone)
        await eventually(lambda: _all_processed(turn_db, conv), within=30)
        await eventually(lambda: _settled(turn_db, conv), within=30)
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
            " order by timestamp, created_at, id",
            conv,
        )
    ]
    assert quoted == stored
    assert sorted(quoted) == [f"m{i:02d}" for i in range(20)]


async def _all_processed(db: asyncpg.Pool, conv: uuid.UUID) -> bool:
    return bool(
        await db.fetchval(
            "select count(*) = 20 and bool_and(processed_by_agent) from public.messages"
            " where conversation_id = $1 and direction = 'inbound'",
            conv,
        )
    )


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


async def test_two_concurrent_handoffs_get_different_assignees_in_turn(
    turn_db: asyncpg.Pool,
    inbox: WebhookClient,
    worker: Worker,
) -> None:
    ws = await make_workspace(turn_db, online_agents=3)
    a, b = wa.customer_phone(), wa.customer_phone()
    await _say(inbox, ws.phone_number_id, a, "#handoff")
    await _say(inbox, ws.phone_number_id, b, "#handoff")
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


async def test_reply_window_waits_for_the_customer_to_pause(
    turn_db: asyncpg.Pool,
    inbox: WebhookClient,
    worker: Worker,
    whatsapp: WhatsAppRecorder,
) -> None:
    ws = await make_workspace(turn_db, reply_window_ms=1200)
    phone = wa.customer_phone()
    proc = await worker.start()
    try:
        await _say(inbox, ws.phone_number_id, phone, "hola")
        await asyncio.sleep(0.4)
        await _say(inbox, ws.phone_number_id, phone, "¿cuánto cuesta?")
        await eventually(lambda: _sent_count(whatsapp, phone, 1), within=15)
        await asyncio.sleep(0.5)
    finally:
        proc.terminate()
        await proc.wait()
    assert await whatsapp.texts(phone) == ["Recibido (2): hola | ¿cuánto cuesta?"]


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


async def test_whatsapp_typing_indicator_precedes_the_reply_when_the_workspace_wants_it(
    turn_db: asyncpg.Pool,
    inbox: WebhookClient,
    worker: Worker,
    whatsapp: WhatsAppRecorder,
) -> None:
    on = await make_workspace(turn_db, whatsapp_typing_indicator=True)
    off = await make_workspace(turn_db)
    phone_on, phone_off = wa.customer_phone(), wa.customer_phone()
    [wamid] = await _say(inbox, on.phone_number_id, phone_on, "hola")
    await _say(inbox, off.phone_number_id, phone_off, "hola")
    assert await worker.burst() == 0

    requests = [
        r for r in await whatsapp.requests(on.phone_number_id) if r["kind"] in ("typing", "send")
    ]
    assert [r["kind"] for r in requests] == ["typing", "send"]
    assert requests[0]["body"]["message_id"] == wamid
    assert requests[0]["body"]["typing_indicator"] == {"type": "text"}
    assert [r["kind"] for r in await whatsapp.requests(off.phone_number_id)] == ["send"]


async def test_a_360dialog_channel_sends_with_its_api_key(
    turn_db: asyncpg.Pool,
    inbox: WebhookClient,
    worker: Worker,
    whatsapp: WhatsAppRecorder,
) -> None:
    ws = await make_workspace(
        turn_db,
        provider="360dialog",
        api_base_url=f"{worker.stack.devstack_url}/whatsapp/360dialog",
    )
    phone = wa.customer_phone()
    msg = wa.text("hola", sender=phone, ts=int(time.time()))
    response = await inbox.post(
        wa.body(wa.change(ws.phone_number_id, messages=[msg])),
        secret=D360_SECRET,
        header="X-360Dialog-Signature",
    )
    assert response.status_code == 200
    assert await worker.burst() == 0
    [send] = await whatsapp.sends(phone)
    assert send["provider"] == "360dialog"
    assert send["headers"].get("d360-api-key") == ACCESS_TOKEN
    assert "authorization" not in send["headers"]
    assert send["response"]["status"] == 200


async def test_typing_broadcast_failures_never_fail_the_turn(
    turn_db: asyncpg.Pool,
    inbox: WebhookClient,
    worker: Worker,
    whatsapp: WhatsAppRecorder,
) -> None:
    ws = await make_workspace(turn_db)
    phone = wa.customer_phone()
    await _say(inbox, ws.phone_number_id, phone, "hola")
    # Realtime is unreachable for this worker (the WhatsApp stand-in is not).
    assert await worker.burst(SUPABASE_URL=f"http://127.0.0.1:{free_port()}") == 0
    assert await whatsapp.texts(phone) == ["Recibido (1): hola"]


async def test_the_webhook_correlation_id_travels_into_the_job(
    turn_db: asyncpg.Pool,
    inbox: WebhookClient,
    worker: Worker,
) -> None:
    ws = await make_workspace(turn_db)
    msg = wa.text("hola", sender=wa.customer_phone(), ts=int(time.time()))
    raw = json.dumps(wa.body(wa.change(ws.phone_number_id, messages=[msg]))).encode()
    response = await inbox.http.post(
        "/webhooks/whatsapp",
        content=raw,
        headers={
            "content-type": "application/json",
            "x-request-id": "req-7f3a",
            "x-hub-signature-256": sign(raw, APP_SECRET),
        },
    )
    assert response.status_code == 200
    message_id = await turn_db.fetchval(
        "select id from public.messages where wamid = $1", msg["id"]
    )
    redis = await create_pool(redis_settings(worker.stack.redis_url))
    try:
        info = await Job(
            inbound_job_id(str(message_id)), redis, _queue_name=worker.queue_name
        ).info()
    finally:
        await redis.aclose()
    assert info is not None
    assert info.kwargs["correlation_id"] == "req-7f3a"
    assert info.kwargs["message_id"] == str(message_id)


async def test_a_turn_withdraws_the_queued_jobs_of_the_messages_it_answered(
    turn_db: asyncpg.Pool,
    inbox: WebhookClient,
    worker: Worker,
    whatsapp: WhatsAppRecorder,
) -> None:
    ws = await make_workspace(turn_db)
    phone = wa.customer_phone()
    await _say(inbox, ws.phone_number_id, phone, "hola", "quiero info", "¿precio?")
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
