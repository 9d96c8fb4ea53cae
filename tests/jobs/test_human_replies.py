"""A member replies through the bridge: the inbox's own client (supabase-js with the member's
token) calls public.send_message; the real worker hears of it (LISTEN) and sends it through the
same outbox, lock and order as the bot's replies, with its author; its statuses flow back; the
bot pauses; a closed 24-hour window fails the text with the reason and a template goes out."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import asyncpg
import pytest

from bridge.http_pool import pooled_session
from jobs.whatsapp_api import Channel, Rejected, SendPolicy, WhatsAppClient, parse_base_url
from tests.factories import whatsapp as wa
from tests.factories.tokens import user_token
from tests.fixtures.devstack import ANON_KEY
from tests.fixtures.webhook import WebhookClient
from tests.fixtures.worker import TurnStack, WhatsAppRecorder, Worker, eventually, make_workspace
from tests.jobs.turns import conversation, outbound, say, settled, texts_sent
from tests.js.node import Node, needs_node, read_json

pytestmark = needs_node


async def rpc(
    node: Node, stack: TurnStack, user: uuid.UUID | None, fn: str, **args: Any
) -> dict[str, Any]:
    """`supabase.rpc(fn, args)` as the member `user` (None: nobody signed in)."""
    token = "-" if user is None else user_token(user)
    proc = await node(
        "member_rpc.mjs", stack.devstack_url, ANON_KEY, token, fn, json.dumps(args, default=str)
    )
    answer: dict[str, Any] = await read_json(proc, within=20)
    return answer


async def row(db: asyncpg.Pool, message_id: str) -> asyncpg.Record:
    found = await db.fetchrow("select * from public.messages where id = $1", uuid.UUID(message_id))
    assert found is not None
    return found


async def test_a_members_reply_goes_out_through_the_worker_and_pauses_the_bot(
    turn_db: asyncpg.Pool,
    turn_stack: TurnStack,
    inbox: WebhookClient,
    worker: Worker,
    whatsapp: WhatsAppRecorder,
    node: Node,
) -> None:
    ws = await make_workspace(turn_db)
    stranger = await make_workspace(turn_db)
    phone = wa.customer_phone()
    await say(inbox, ws.phone_number_id, phone, "hola")
    conv = await conversation(turn_db, ws.id, phone)
    proc = await worker.start()
    try:
        await eventually(lambda: texts_sent(whatsapp, phone, 1), within=15)
        # Refused for a member of another workspace and for anon: nothing is queued.
        for user in (stranger.agents[0], None):
            refused = await rpc(
                node, turn_stack, user, "send_message", p_conversation_id=conv, p_text="spam"
            )
            assert refused["data"] is None
            assert refused["error"]["code"] == "42501", refused
        started = time.monotonic()
        sent = await rpc(
            node,
            turn_stack,
            ws.agents[0],
            "send_message",
            p_conversation_id=conv,
            p_text="Hola, soy Laura",
        )
        assert sent["error"] is None, sent
        message_id = sent["data"]

        async def delivered() -> bool:
            return bool((await row(turn_db, message_id))["status"] == "sent")

        # The sweeper is off in these tests (JOBS_SWEEP_AFTER_SECONDS=3600): only the
        # notification can have woken the worker.
        await eventually(delivered, within=10)
        delay = time.monotonic() - started
        # The customer writes again: the bot is paused, the message is handled, not answered.
        await say(inbox, ws.phone_number_id, phone, "y el precio?")
        await eventually(
            lambda: _all_processed(turn_db, conv),
            within=10,
        )
        await eventually(lambda: settled(turn_db, conv), within=10)
    finally:
        proc.terminate()
        await proc.wait()
    human = await row(turn_db, message_id)
    queued_to_sent = (human["status_timestamp"] - human["created_at"]).total_seconds()
    # From the RPC's commit to the recorded send (tens of ms here), and around the call.
    assert queued_to_sent < 2, queued_to_sent
    assert delay < 5
    assert await whatsapp.texts(phone) == ["Recibido (1): hola", "Hola, soy Laura"]
    assert (human["sent_by"], human["sent_by_agent"], human["outbox_kind"]) == (
        ws.agents[0],
        False,
        "human",
    )
    sends = await whatsapp.sends(phone)
    assert human["wamid"] == sends[-1]["response"]["body"]["messages"][0]["id"]
    assert [r["id"] for r in await outbound(turn_db, conv)][-1] == human["id"]
    # Its delivery statuses flow back through the webhook like the bot's.
    status = wa.status(human["wamid"], "delivered", recipient=phone)
    response = await inbox.post(wa.body(wa.change(ws.phone_number_id, statuses=[status])))
    assert response.status_code == 200
    assert (await row(turn_db, message_id))["status"] == "delivered"


async def _all_processed(db: asyncpg.Pool, conv: uuid.UUID) -> bool:
    return bool(
        await db.fetchval(
            "select bool_and(processed_by_agent) from public.messages"
            " where conversation_id = $1 and direction = 'inbound'",
            conv,
        )
    )


async def test_a_queued_bot_reply_is_not_sent_once_a_member_spoke(
    turn_db: asyncpg.Pool,
    turn_stack: TurnStack,
    inbox: WebhookClient,
    worker: Worker,
    whatsapp: WhatsAppRecorder,
    node: Node,
) -> None:
    ws = await make_workspace(turn_db, response_speed=1.0)
    phone = wa.customer_phone()
    await say(inbox, ws.phone_number_id, phone, "hola #replies=3 #delay=1500")
    conv = await conversation(turn_db, ws.id, phone)
    proc = await worker.start()
    try:
        await eventually(lambda: texts_sent(whatsapp, phone, 1), within=15)
        sent = await rpc(
            node, turn_stack, ws.agents[1], "send_message", p_conversation_id=conv, p_text="Yo sigo"
        )
        assert sent["error"] is None, sent
        await eventually(lambda: texts_sent(whatsapp, phone, 2), within=15)
        await eventually(lambda: settled(turn_db, conv), within=15)
    finally:
        proc.terminate()
        await proc.wait()
    assert await whatsapp.texts(phone) == ["Recibido (1): hola #replies=3 #delay=1500", "Yo sigo"]
    rows = await outbound(turn_db, conv)
    bot = [r for r in rows if r["sent_by_agent"]]
    assert [r["status"] for r in bot] == ["sent", "skipped", "skipped"]
    assert {r["skip_reason"] for r in bot[1:]} == {"human took over"}
    assert (
        await turn_db.fetchval("select count(*) from public.tasks where conversation_id = $1", conv)
        == 0
    )


async def test_with_takeover_off_the_members_reply_goes_out_after_the_bots_queued_ones(
    turn_db: asyncpg.Pool,
    turn_stack: TurnStack,
    inbox: WebhookClient,
    worker: Worker,
    whatsapp: WhatsAppRecorder,
    node: Node,
) -> None:
    ws = await make_workspace(turn_db, response_speed=1.0, human_takeover="off")
    phone = wa.customer_phone()
    await say(inbox, ws.phone_number_id, phone, "hola #replies=2 #delay=1500")
    conv = await conversation(turn_db, ws.id, phone)
    proc = await worker.start()
    try:
        await eventually(lambda: texts_sent(whatsapp, phone, 1), within=15)
        sent = await rpc(
            node, turn_stack, ws.agents[0], "send_message", p_conversation_id=conv, p_text="Y yo"
        )
        assert sent["error"] is None, sent
        await eventually(lambda: texts_sent(whatsapp, phone, 3), within=15)
        await eventually(lambda: settled(turn_db, conv), within=15)
    finally:
        proc.terminate()
        await proc.wait()
    # The queue's order: the turn's replies were queued before the member's text.
    assert await whatsapp.texts(phone) == [
        "Recibido (1): hola #replies=2 #delay=1500",
        "Mensaje 2",
        "Y yo",
    ]
    assert (
        await turn_db.fetchval(
            "select bot_paused_until from public.conversations where id = $1", conv
        )
        is None
    )


async def test_a_closed_window_fails_the_text_with_the_reason_and_a_template_goes_out(
    turn_db: asyncpg.Pool,
    turn_stack: TurnStack,
    inbox: WebhookClient,
    worker: Worker,
    whatsapp: WhatsAppRecorder,
    node: Node,
) -> None:
    ws = await make_workspace(turn_db, enabled=False)
    phone = wa.customer_phone()
    await say(inbox, ws.phone_number_id, phone, "hola")
    conv = await conversation(turn_db, ws.id, phone)
    assert await worker.burst() == 0
    # The customer last wrote 25 hours ago.
    await turn_db.execute(
        "update public.conversations set last_customer_message_at = now() - interval '25 hours'"
        " where id = $1",
        conv,
    )
    text = await rpc(
        node, turn_stack, ws.agents[0], "send_message", p_conversation_id=conv, p_text="¿Sigues?"
    )
    template = await rpc(
        node,
        turn_stack,
        ws.agents[0],
        "send_template",
        p_conversation_id=conv,
        p_template_name="seguimiento",
        p_language="es",
        p_parameters=["Ana"],
    )
    assert text["error"] is None, text
    assert template["error"] is None, template
    assert await worker.burst() == 0
    failed = await row(turn_db, text["data"])
    assert (failed["status"], failed["error_code"]) == ("failed", "window_closed")
    assert "24-hour customer service window closed" in failed["error_message"]
    assert "send_template" in failed["error_message"]
    sends = await whatsapp.sends(phone)
    assert [s["body"]["type"] for s in sends] == ["template"]
    assert sends[0]["body"]["template"] == {
        "name": "seguimiento",
        "language": {"code": "es"},
        "components": [{"type": "body", "parameters": [{"type": "text", "text": "Ana"}]}],
    }
    assert (await row(turn_db, template["data"]))["status"] == "sent"


async def test_whatsapps_own_closed_window_answer_fails_the_text_with_the_reason(
    turn_db: asyncpg.Pool,
    turn_stack: TurnStack,
    inbox: WebhookClient,
    worker: Worker,
    whatsapp: WhatsAppRecorder,
    node: Node,
) -> None:
    ws = await make_workspace(turn_db, enabled=False)
    phone = wa.customer_phone()
    await say(inbox, ws.phone_number_id, phone, "hola")
    conv = await conversation(turn_db, ws.id, phone)
    assert await worker.burst() == 0
    await whatsapp.fault(kind="graph_error", code=131047, to=phone)
    sent = await rpc(
        node, turn_stack, ws.agents[0], "send_message", p_conversation_id=conv, p_text="Hola"
    )
    assert sent["error"] is None, sent
    assert await worker.burst() == 0
    failed = await row(turn_db, sent["data"])
    assert (failed["status"], failed["error_code"]) == ("failed", "131047")
    assert failed["error_message"].startswith("24-hour customer service window closed")


@pytest.mark.parametrize(
    ("template", "details"),
    [
        ({"language": {"code": "es"}}, "template[name]"),
        ({"name": "seguimiento"}, "template[language]"),
        ({"name": "seguimiento", "language": {}}, "template[language][code]"),
        ({"name": "x", "language": {"code": "es"}, "components": [{}]}, "[components][0][type]"),
    ],
)
async def test_the_stand_in_refuses_a_malformed_template_as_the_cloud_api_does(
    turn_stack: TurnStack, whatsapp: WhatsAppRecorder, template: dict[str, Any], details: str
) -> None:
    session = pooled_session(timeout=5.0, max_connections=1)
    base = f"{turn_stack.devstack_url}/whatsapp/v21.0"
    client = WhatsAppClient(session, SendPolicy(parse_base_url(base), (parse_base_url(base),)))
    try:
        with pytest.raises(Rejected) as refused:
            await client.send_template(
                Channel("meta", "1000000000000099", base, "token"), "573000000000", template
            )
    finally:
        await session.close()
    assert refused.value.code == 100
    assert str(refused.value).startswith("HTTP 400: (#100)")
    requests = await whatsapp.requests("1000000000000099")
    assert details in requests[-1]["response"]["body"]["error"]["error_data"]["details"]
