"""Sending when WhatsApp or Realtime misbehave: throttling retried, a closed window recorded,
ambiguous outcomes never resent, typing broadcast failures never failing the turn; a channel's
URL, written by its tenant, never steering the operator's token or a request anywhere."""

from __future__ import annotations

import asyncpg
import pytest

from devstack.workspaces import Credentials, Member, create_workspace
from tests.factories import whatsapp as wa
from tests.fixtures.devstack import free_port
from tests.fixtures.webhook import WebhookClient
from tests.fixtures.worker import WhatsAppRecorder, Worker, Workspace, make_workspace
from tests.jobs.listener import Listener, listening
from tests.jobs.turns import conversation, handoff_tasks, replies, say


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
    first, second = await replies(turn_db, conv)
    assert (first["status"], first["error_code"]) == ("failed", "131047")
    assert second["status"] == "skipped"
    assert "131047" in second["skip_reason"]
    # The customer got no answer: a human is asked to take over, once.
    [task] = await handoff_tasks(turn_db, conv)
    assert "a reply failed" in task
    assert "Recibido (1): hola #replies=2" in [
        s["body"]["text"]["body"] for s in await whatsapp.sends(closed)
    ]
    assert await handoff_tasks(turn_db, await conversation(turn_db, ws.id, throttled)) == []


async def test_a_long_throttle_is_waited_out_and_one_beyond_its_span_goes_to_a_human(
    turn_db: asyncpg.Pool,
    inbox: WebhookClient,
    worker: Worker,
    whatsapp: WhatsAppRecorder,
) -> None:
    ws = await make_workspace(turn_db)
    patient, hopeless = wa.customer_phone(), wa.customer_phone()
    # Eight throttles in a row: waits of 0.01 s doubling (2.55 s in all) within a 3 s span.
    await whatsapp.fault(kind="graph_error", code=130429, to=patient, count=8)
    await say(inbox, ws.phone_number_id, patient, "hola")
    worker.extra_env.update(JOBS_SEND_BACKOFF_SECONDS="0.01", JOBS_THROTTLE_SPAN_SECONDS="3")
    assert await worker.burst() == 0
    assert len(await whatsapp.sends(patient)) == 9
    [row] = await replies(turn_db, await conversation(turn_db, ws.id, patient))
    assert row["status"] == "sent"
    assert await handoff_tasks(turn_db, await conversation(turn_db, ws.id, patient)) == []

    # Throttled for longer than the span (the reply's 9 attempts, then the handoff message's):
    # failed, and a human takes the conversation, once.
    await whatsapp.fault(kind="graph_error", code=130429, to=hopeless, count=18)
    await say(inbox, ws.phone_number_id, hopeless, "hola")
    assert await worker.burst() == 0
    conv = await conversation(turn_db, ws.id, hopeless)
    [row] = await replies(turn_db, conv)
    assert (row["status"], row["error_code"]) == ("failed", "130429")
    [task] = await handoff_tasks(turn_db, conv)
    assert "still throttled" in task


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
        [row] = await replies(turn_db, conv)
        assert row["status"] == "unknown", phone
        assert row["send_attempts"] == 1
        assert await _reply_sends(whatsapp, phone) == 1
        # Whether the customer got it is unknown: a human is asked to check, once.
        [task] = await handoff_tasks(turn_db, conv)
        assert "fate is unknown" in task
    # Nothing picks them up again later either.
    assert await worker.burst(JOBS_SWEEP_AFTER_SECONDS="0") == 0
    assert await _reply_sends(whatsapp, server_error) == 1
    assert len(await handoff_tasks(turn_db, await conversation(turn_db, ws.id, server_error))) == 1


async def _reply_sends(whatsapp: WhatsAppRecorder, phone: str) -> int:
    return sum(
        1 for s in await whatsapp.sends(phone) if s["body"]["text"]["body"].startswith("Recibido")
    )


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


# A channel's api_base_url is tenant data: the worker sends only to endpoints the operator
# allowed, the default token only to WHATSAPP_API_BASE_URL, and keeps no raw answer.
DEFAULT_TOKEN = "operator-default-token-do-not-leak"


async def _channel_workspace(
    db: asyncpg.Pool, api_base_url: str, *, credentials: Credentials | None = None
) -> Workspace:
    """A workspace whose channel points at `api_base_url`, as an admin could set it."""
    async with db.acquire() as conn:
        ws = await create_workspace(
            conn,
            "Tenant",
            api_base_url=api_base_url,
            credentials=credentials,
            agent={"agent_enabled": True, "conversational_agent_id": "diagnostic-v1"},
            members=[Member("agent", online=True)],
            team="Ventas",
        )
    return Workspace(ws.id, ws.phone_number_id, sorted(ws.members))


def _leaked(listener: Listener) -> list[str]:
    return [str(r["headers"]) for r in listener.requests if DEFAULT_TOKEN in str(r["headers"])]


@pytest.mark.parametrize("suffix", ["/v21.0", "/internal/admin#", "/internal/admin?"])
async def test_a_tenant_url_gets_neither_the_default_token_nor_any_request(
    turn_db: asyncpg.Pool, inbox: WebhookClient, worker: Worker, suffix: str
) -> None:
    async with listening() as listener:
        listener.body = b'{"secret": "internal answer hunter2"}'
        ws = await _channel_workspace(turn_db, listener.url + suffix)
        phone = wa.customer_phone()
        await say(inbox, ws.phone_number_id, phone, "hola")
        assert await worker.burst(WHATSAPP_ACCESS_TOKEN=DEFAULT_TOKEN) == 0
        assert _leaked(listener) == []
        assert listener.requests == []
    [row] = await replies(turn_db, await conversation(turn_db, ws.id, phone))
    assert row["status"] == "failed"
    assert "not an allowed provider endpoint" in row["error_message"]
    assert "hunter2" not in row["error_message"]


async def test_an_allowed_endpoint_still_never_gets_the_default_token(
    turn_db: asyncpg.Pool, inbox: WebhookClient, worker: Worker
) -> None:
    async with listening() as listener:
        ws = await _channel_workspace(turn_db, f"{listener.url}/v21.0")
        phone = wa.customer_phone()
        await say(inbox, ws.phone_number_id, phone, "hola")
        allowed = f"{worker.stack.devstack_url}/whatsapp/v21.0,{listener.url}"
        assert (
            await worker.burst(
                WHATSAPP_ACCESS_TOKEN=DEFAULT_TOKEN, WHATSAPP_API_ALLOWED_BASE_URLS=allowed
            )
            == 0
        )
        assert listener.requests == []
    [row] = await replies(turn_db, await conversation(turn_db, ws.id, phone))
    assert row["status"] == "failed"
    assert "default access token" in row["error_message"]


@pytest.mark.parametrize(
    ("status", "body", "outcome"),
    [
        (200, b'{"messages": [{"id": "chosen-by-the-server hunter2"}]}', "unknown"),
        (200, b"<html>hunter2</html>", "unknown"),
        (400, b'{"error": {"code": 100, "message": "Bad"}, "dump": "hunter2"}', "failed"),
        (403, b"<html>internal hunter2</html>", "failed"),
        (502, b"<html>proxy hunter2</html>", "unknown"),
    ],
)
async def test_what_an_endpoint_answers_is_never_stored_raw_nor_trusted_as_a_wamid(
    turn_db: asyncpg.Pool,
    inbox: WebhookClient,
    worker: Worker,
    status: int,
    body: bytes,
    outcome: str,
) -> None:
    async with listening() as listener:
        listener.status, listener.body = status, body
        ws = await _channel_workspace(
            turn_db, f"{listener.url}/v21.0", credentials=Credentials(access_token="its-own")
        )
        phone = wa.customer_phone()
        await say(inbox, ws.phone_number_id, phone, "hola")
        allowed = f"{worker.stack.devstack_url}/whatsapp/v21.0 {listener.url}/v21.0"
        assert await worker.burst(WHATSAPP_API_ALLOWED_BASE_URLS=allowed) == 0
        assert any(r["path"].endswith("/messages") for r in listener.requests)
    [row] = await replies(turn_db, await conversation(turn_db, ws.id, phone))
    assert row["status"] == outcome
    assert row["wamid"] is None
    assert "hunter2" not in (row["error_message"] or "")
