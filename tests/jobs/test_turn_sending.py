"""Sending when WhatsApp or Realtime misbehave: throttling retried, a closed window recorded,
ambiguous outcomes never resent, typing broadcast failures never failing the turn."""

from __future__ import annotations

import asyncpg

from tests.factories import whatsapp as wa
from tests.fixtures.devstack import free_port
from tests.fixtures.webhook import WebhookClient
from tests.fixtures.worker import WhatsAppRecorder, Worker, make_workspace
from tests.jobs.turns import conversation, outbound, say


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
    await say(inbox, ws.phone_number_id, throttled, "hola")
    await say(inbox, ws.phone_number_id, closed, "hola #replies=2")
    assert await worker.burst() == 0

    assert await whatsapp.texts(throttled) == ["Recibido (1): hola"]
    assert len(await whatsapp.sends(throttled)) == 3  # two throttled attempts, then sent
    conv = await conversation(turn_db, ws.id, closed)
    first, second = await outbound(turn_db, conv)
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
    await say(inbox, ws.phone_number_id, server_error, "hola")
    await say(inbox, ws.phone_number_id, timeout, "hola")
    assert await worker.burst(WHATSAPP_SEND_TIMEOUT_SECONDS="1") == 0
    for phone in (server_error, timeout):
        conv = await conversation(turn_db, ws.id, phone)
        [row] = await outbound(turn_db, conv)
        assert row["status"] == "unknown", phone
        assert row["send_attempts"] == 1
        assert len(await whatsapp.sends(phone)) == 1
    # Nothing picks them up again later either.
    assert await worker.burst(JOBS_SWEEP_AFTER_SECONDS="0") == 0
    assert len(await whatsapp.sends(server_error)) == 1


async def test_typing_broadcast_failures_never_fail_the_turn(
    turn_db: asyncpg.Pool,
    inbox: WebhookClient,
    worker: Worker,
    whatsapp: WhatsAppRecorder,
) -> None:
    ws = await make_workspace(turn_db)
    phone = wa.customer_phone()
    await say(inbox, ws.phone_number_id, phone, "hola")
    # Realtime is unreachable for this worker (the WhatsApp stand-in is not).
    assert await worker.burst(SUPABASE_URL=f"http://127.0.0.1:{free_port()}") == 0
    assert await whatsapp.texts(phone) == ["Recibido (1): hola"]
