"""POST /webhooks/whatsapp end to end: signature → parse → one RPC through supabase-py and the
devstack PostgREST → rows in Postgres → one arq job per new inbound message in Redis."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import pytest
from arq import create_pool
from arq.jobs import Job
from redis.asyncio import Redis

from bridge.api.signature import sign
from bridge.queue import inbound_job_id, redis_settings
from tests.factories import whatsapp as wa
from tests.fixtures.webhook import APP_SECRET, D360_SECRET, VERIFY_TOKEN, Channel, WebhookClient

MakeChannel = Callable[..., Awaitable[Channel]]


async def _messages(db: asyncpg.Pool, channel: Channel) -> list[asyncpg.Record]:
    return await db.fetch(
        "select m.*, c.phone, c.bsuid, c.profile_name from public.messages m"
        " join public.conversations c on c.id = m.conversation_id"
        " where m.workspace_id = $1 order by m.timestamp, m.wamid",
        channel.workspace_id,
    )


async def _job_exists(redis_url: str, message_id: Any) -> bool:
    redis = Redis.from_url(redis_url)
    try:
        return bool(await redis.exists(f"arq:job:{inbound_job_id(str(message_id))}"))
    finally:
        await redis.aclose()


async def test_verification_handshake_echoes_the_challenge(webhook: WebhookClient) -> None:
    params = {
        "hub.mode": "subscribe",
        "hub.verify_token": VERIFY_TOKEN,
        "hub.challenge": "1158201444",
    }
    ok = await webhook.http.get("/webhooks/whatsapp", params=params)
    assert ok.status_code == 200
    assert ok.text == "1158201444"
    assert ok.headers["content-type"].startswith("text/plain")

    wrong_token = await webhook.http.get(
        "/webhooks/whatsapp", params={**params, "hub.verify_token": "nope"}
    )
    wrong_mode = await webhook.http.get(
        "/webhooks/whatsapp", params={**params, "hub.mode": "unsubscribe"}
    )
    no_params = await webhook.http.get("/webhooks/whatsapp")
    assert [wrong_token.status_code, wrong_mode.status_code, no_params.status_code] == [403] * 3


async def test_other_methods_are_refused_with_a_json_405(webhook: WebhookClient) -> None:
    response = await webhook.http.put("/webhooks/whatsapp", content=b"{}")
    assert response.status_code == 405
    assert response.json() == {"detail": "Method Not Allowed"}
    assert set(response.headers["allow"].split(", ")) == {"GET", "HEAD", "POST"}


async def test_single_text_is_stored_and_enqueued(
    webhook: WebhookClient, make_channel: MakeChannel, db: asyncpg.Pool, redis_url: str
) -> None:
    channel = await make_channel()
    sender = wa.customer_phone()
    msg = wa.text("hola, ¿cuánto cuesta?", sender=sender)
    response = await webhook.post(wa.body(wa.change(channel.phone_number_id, messages=[msg])))
    assert response.status_code == 200, response.text

    rows = await _messages(db, channel)
    assert len(rows) == 1
    row = rows[0]
    assert row["wamid"] == msg["id"]
    assert row["direction"] == "inbound"
    assert row["type"] == "text"
    assert json.loads(row["content"])["body"] == "hola, ¿cuánto cuesta?"
    assert row["processed_by_agent"] is False
    assert row["sent_by_agent"] is False
    assert row["phone"] == sender
    assert row["profile_name"] == f"Cliente {sender[-4:]}"
    assert int(row["timestamp"].timestamp()) == int(msg["timestamp"])

    conv = await db.fetchrow(
        "select * from public.conversations where id = $1", row["conversation_id"]
    )
    assert conv is not None
    assert conv["last_message_preview"] == "hola, ¿cuánto cuesta?"
    assert conv["unread_count"] == 1
    assert conv["last_customer_message_at"] == row["timestamp"]
    assert await _job_exists(redis_url, row["id"])

    event = await db.fetchrow(
        "select * from public.whatsapp_webhook_events where $1 = any(wa_message_ids)", msg["id"]
    )
    assert event is not None
    assert event["status"] == "processed"
    assert event["workspace_id"] == channel.workspace_id


async def test_batch_of_messages_and_statuses_across_two_changes_is_stored_whole(
    webhook: WebhookClient, make_channel: MakeChannel, db: asyncpg.Pool, redis_url: str
) -> None:
    channel = await make_channel()
    a, b = wa.customer_phone(), wa.customer_phone()
    # Outbound messages the statuses refer to, as the sender would have stored them.
    conv = await db.fetchval(
        "insert into public.conversations (workspace_id, phone_number_id, phone)"
        " values ($1, $2, $3) returning id",
        channel.workspace_id,
        channel.phone_number_id,
        a,
    )
    outbound = [wa.wamid(), wa.wamid()]
    for w in outbound:
        await db.execute(
            "insert into public.messages (workspace_id, conversation_id, wamid, direction, type,"
            " content, status) values ($1, $2, $3, 'outbound', 'text', '{}', 'pending')",
            channel.workspace_id,
            conv,
            w,
        )
    now = int(time.time())
    msgs = [
        wa.text("uno", sender=a, ts=now),
        wa.text("dos", sender=a, ts=now + 1),
        wa.text("tres", sender=b, ts=now + 2),
    ]
    statuses = [
        wa.status(outbound[0], "sent", recipient=a, ts=now),
        wa.status(outbound[0], "delivered", recipient=a, ts=now + 1),
        wa.status(outbound[1], "sent", recipient=a, ts=now),
        wa.status(outbound[1], "read", recipient=a, ts=now + 2),
    ]
    payload = wa.body(
        wa.change(channel.phone_number_id, messages=msgs[:2], statuses=statuses[:2]),
        wa.change(channel.phone_number_id, messages=msgs[2:], statuses=statuses[2:]),
        entries=2,
    )
    response = await webhook.post(payload)
    assert response.status_code == 200, response.text

    rows = [r for r in await _messages(db, channel) if r["direction"] == "inbound"]
    assert [json.loads(r["content"])["body"] for r in rows] == ["uno", "dos", "tres"]
    assert len({r["conversation_id"] for r in rows}) == 2
    for r in rows:
        assert await _job_exists(redis_url, r["id"])
    status_of = {
        r["wamid"]: r["status"]
        for r in await db.fetch(
            "select wamid, status from public.messages where wamid = any($1)", outbound
        )
    }
    assert status_of == {outbound[0]: "delivered", outbound[1]: "read"}


async def test_every_message_type_is_stored_and_enqueued(
    webhook: WebhookClient, make_channel: MakeChannel, db: asyncpg.Pool, redis_url: str
) -> None:
    channel = await make_channel()
    sender = wa.customer_phone()
    msgs = [wa.typed_message(kind, obj, sender=sender) for kind, obj in wa.EVERY_TYPE]
    response = await webhook.post(wa.body(wa.change(channel.phone_number_id, messages=msgs)))
    assert response.status_code == 200, response.text

    rows = {r["wamid"]: r for r in await _messages(db, channel)}
    assert set(rows) == {m["id"] for m in msgs}
    for m in msgs:
        row = rows[m["id"]]
        assert row["type"] == m["type"]
        content = json.loads(row["content"])
        assert content["raw"].get(m["type"]) == m.get(m["type"])  # nothing mapped is lost
        # A reaction acts on its target: nothing for the agent to answer.
        assert await _job_exists(redis_url, row["id"]) is (m["type"] != "reaction")
    by_type = {r["type"]: json.loads(r["content"]) for r in rows.values()}
    assert by_type["image"]["mediaId"] == "111"
    assert by_type["image"]["caption"] == "mira"
    assert by_type["document"]["filename"] == "factura.pdf"
    assert by_type["location"]["latitude"] == 4.65
    assert by_type["button"]["body"] == "Sí, quiero"
    assert by_type["reaction"]["emoji"] == "👍"
    assert by_type["hologram"]["body"] == "[hologram]"


async def test_360dialog_signature_routes_to_360dialog_channels_only(
    webhook: WebhookClient, make_channel: MakeChannel, db: asyncpg.Pool
) -> None:
    d360 = await make_channel(provider="360dialog")
    meta = await make_channel(provider="meta")
    m1 = wa.text("hola", sender=wa.customer_phone())
    m2 = wa.text("hola", sender=wa.customer_phone())
    response = await webhook.post(
        wa.body(wa.change(d360.phone_number_id, messages=[m1])),
        secret=D360_SECRET,
        header="X-360Dialog-Signature",
    )
    assert response.status_code == 200
    assert len(await _messages(db, d360)) == 1

    # A body signed by 360dialog cannot write into a Meta channel (and the reverse).
    response = await webhook.post(
        wa.body(wa.change(meta.phone_number_id, messages=[m2])),
        secret=D360_SECRET,
        header="X-360Dialog-Signature",
    )
    assert response.status_code == 200
    assert await _messages(db, meta) == []
    status = await db.fetchval(
        "select status from public.whatsapp_webhook_events where $1 = any(wa_message_ids)", m2["id"]
    )
    assert status == "unroutable"


async def test_statuses_out_of_order_never_move_backwards(
    webhook: WebhookClient, make_channel: MakeChannel, db: asyncpg.Pool
) -> None:
    channel = await make_channel()
    phone = wa.customer_phone()
    conv = await db.fetchval(
        "insert into public.conversations (workspace_id, phone_number_id, phone)"
        " values ($1, $2, $3) returning id",
        channel.workspace_id,
        channel.phone_number_id,
        phone,
    )
    read_first, failed_first = wa.wamid(), wa.wamid()
    for w in (read_first, failed_first):
        await db.execute(
            "insert into public.messages (workspace_id, conversation_id, wamid, direction, type,"
            " content, status) values ($1, $2, $3, 'outbound', 'text', '{}', 'sent')",
            channel.workspace_id,
            conv,
            w,
        )
    t = int(time.time())
    for st in [
        wa.status(read_first, "read", recipient=phone, ts=t + 2),
        wa.status(read_first, "delivered", recipient=phone, ts=t + 1),
        wa.status(read_first, "sent", recipient=phone, ts=t),
        wa.status(failed_first, "failed", recipient=phone, ts=t, error=131026),
        wa.status(failed_first, "sent", recipient=phone, ts=t),
    ]:
        response = await webhook.post(wa.body(wa.change(channel.phone_number_id, statuses=[st])))
        assert response.status_code == 200
    row = await db.fetchrow("select * from public.messages where wamid = $1", read_first)
    assert row is not None
    assert row["status"] == "read"
    assert int(row["status_timestamp"].timestamp()) == t + 2
    failed = await db.fetchrow("select * from public.messages where wamid = $1", failed_first)
    assert failed is not None
    assert (failed["status"], failed["error_code"], failed["error_message"]) == (
        "failed",
        "131026",
        "Message undeliverable",
    )

    # A "delivered" after "failed" (multi-device) upgrades it; the error stays on record.
    await webhook.post(
        wa.body(
            wa.change(
                channel.phone_number_id,
                statuses=[wa.status(failed_first, "delivered", recipient=phone, ts=t + 3)],
            )
        )
    )
    failed = await db.fetchrow("select * from public.messages where wamid = $1", failed_first)
    assert failed is not None
    assert (failed["status"], failed["error_code"]) == ("delivered", "131026")


async def test_status_before_its_message_is_kept_and_applied_later(
    webhook: WebhookClient, make_channel: MakeChannel, db: asyncpg.Pool
) -> None:
    channel = await make_channel()
    phone = wa.customer_phone()
    early = wa.wamid()
    response = await webhook.post(
        wa.body(
            wa.change(
                channel.phone_number_id, statuses=[wa.status(early, "delivered", recipient=phone)]
            )
        )
    )
    assert response.status_code == 200
    assert (
        await db.fetchval(
            "select count(*) from public.message_status_orphans where wamid = $1", early
        )
        == 1
    )

    # The message then appears (here as an echo of a send made from the Business app).
    echo = {
        "from": "15550001111",
        "to": phone,
        "id": early,
        "timestamp": str(int(time.time())),
        "type": "text",
        "text": {"body": "te escribo desde el teléfono"},
    }
    change = wa.change(channel.phone_number_id, contacts=[{"wa_id": phone}])
    change["field"] = "smb_message_echoes"
    change["value"]["message_echoes"] = [echo]
    response = await webhook.post(wa.body(change))
    assert response.status_code == 200
    row = await db.fetchrow("select * from public.messages where wamid = $1", early)
    assert row is not None
    assert (row["direction"], row["status"], row["sent_by_agent"]) == (
        "outbound",
        "delivered",
        False,
    )
    assert (
        await db.fetchval(
            "select count(*) from public.message_status_orphans where wamid = $1", early
        )
        == 0
    )


async def test_unknown_phone_number_id_is_acknowledged_and_kept(
    webhook: WebhookClient, db: asyncpg.Pool
) -> None:
    msg = wa.text("hola", sender=wa.customer_phone())
    before = webhook.app.state.runtime.metrics.value("bridge_webhook_unroutable_total")
    response = await webhook.post(wa.body(wa.change("999000999000999", messages=[msg])))
    assert response.status_code == 200
    event = await db.fetchrow(
        "select * from public.whatsapp_webhook_events where $1 = any(wa_message_ids)", msg["id"]
    )
    assert event is not None
    assert event["status"] == "unroutable"
    assert "999000999000999" in event["error_message"]
    assert (
        await db.fetchval("select count(*) from public.messages where wamid = $1", msg["id"]) == 0
    )
    after = webhook.app.state.runtime.metrics.value("bridge_webhook_unroutable_total")
    assert after == before + 1


async def test_bsuid_only_user_gets_a_conversation_keyed_by_bsuid(
    webhook: WebhookClient, make_channel: MakeChannel, db: asyncpg.Pool
) -> None:
    channel = await make_channel()
    bsuid = f"CO.{time.time_ns()}"
    msg = {
        "from_user_id": bsuid,
        "id": wa.wamid(),
        "timestamp": str(int(time.time())),
        "type": "text",
        "text": {"body": "hola sin número"},
    }
    response = await webhook.post(
        wa.body(
            wa.change(
                channel.phone_number_id,
                messages=[msg],
                contacts=[{"profile": {"name": "Usuario"}, "user_id": bsuid}],
            )
        )
    )
    assert response.status_code == 200, response.text
    rows = await _messages(db, channel)
    assert [(r["phone"], r["bsuid"], r["profile_name"]) for r in rows] == [(None, bsuid, "Usuario")]

    # The same person later seen with a phone too: same conversation, which learns the phone.
    phone = wa.customer_phone()
    msg2 = wa.text("ahora con número", sender=phone)
    msg2["from_user_id"] = bsuid
    await webhook.post(
        wa.body(
            wa.change(
                channel.phone_number_id,
                messages=[msg2],
                contacts=[{"profile": {"name": "Usuario"}, "wa_id": phone, "user_id": bsuid}],
            )
        )
    )
    rows = await _messages(db, channel)
    assert len({r["conversation_id"] for r in rows}) == 1
    assert {r["phone"] for r in rows} == {phone}


async def test_a_redelivery_fills_what_the_conversation_lacks(
    webhook: WebhookClient, make_channel: MakeChannel, db: asyncpg.Pool
) -> None:
    channel = await make_channel()
    phone, bsuid = wa.customer_phone(), f"CO.{time.time_ns()}"
    msg = wa.text("hola", sender=phone)
    first = wa.change(channel.phone_number_id, messages=[msg], contacts=[{"wa_id": phone}])
    assert (await webhook.post(wa.body(first))).status_code == 200
    rows = await _messages(db, channel)
    assert [(r["phone"], r["bsuid"], r["profile_name"]) for r in rows] == [(phone, None, None)]

    # The same message delivered again, now with the sender's BSUID and profile name.
    again = dict(msg, from_user_id=bsuid)
    contact = {"profile": {"name": "Ana"}, "wa_id": phone, "user_id": bsuid}
    second = wa.change(channel.phone_number_id, messages=[again], contacts=[contact])
    assert (await webhook.post(wa.body(second))).status_code == 200
    rows = await _messages(db, channel)
    assert [(r["phone"], r["bsuid"], r["profile_name"]) for r in rows] == [(phone, bsuid, "Ana")]


async def test_a_stored_message_links_the_contact_of_the_conversations_identity(
    webhook: WebhookClient, make_channel: MakeChannel, db: asyncpg.Pool
) -> None:
    channel = await make_channel()
    phone, bsuid = wa.customer_phone(), f"CO.{time.time_ns()}"
    msg = wa.text("hola", sender=phone)
    msg["from_user_id"] = bsuid
    contacts = [{"profile": {"name": "Ana"}, "wa_id": phone, "user_id": bsuid}]
    await webhook.post(
        wa.body(wa.change(channel.phone_number_id, messages=[msg], contacts=contacts))
    )
    conversation = await db.fetchrow(
        "select id, contact_id from public.conversations where workspace_id = $1",
        channel.workspace_id,
    )
    assert conversation is not None
    assert conversation["contact_id"] is None

    # A CRM contact known only by the BSUID; the next message carries only the phone.
    contact_id = await db.fetchval(
        "insert into public.contacts (workspace_id, name, bsuid) values ($1, 'Ana', $2)"
        " returning id",
        channel.workspace_id,
        bsuid,
    )
    later = wa.text("sigo aquí", sender=phone)
    await webhook.post(wa.body(wa.change(channel.phone_number_id, messages=[later])))
    linked = await db.fetchval(
        "select contact_id from public.conversations where id = $1", conversation["id"]
    )
    assert linked == contact_id


async def test_same_post_twice_stores_and_enqueues_once(
    webhook: WebhookClient,
    make_channel: MakeChannel,
    db: asyncpg.Pool,
    redis_url: str,
    queue_name: str,
) -> None:
    channel = await make_channel()
    payload = wa.body(
        wa.change(channel.phone_number_id, messages=[wa.text("hola", sender=wa.customer_phone())])
    )
    first = await webhook.post(payload)
    second = await webhook.post(payload)
    assert (first.status_code, second.status_code) == (200, 200)
    rows = await _messages(db, channel)
    assert len(rows) == 1
    runtime = webhook.app.state.runtime
    assert runtime.metrics.value("bridge_messages_duplicate_total") >= 1
    assert await _job_exists(redis_url, rows[0]["id"])


async def test_twenty_identical_posts_at_once_store_one_row_and_one_job(
    webhook: WebhookClient,
    make_channel: MakeChannel,
    db: asyncpg.Pool,
    redis_url: str,
    queue_name: str,
) -> None:
    channel = await make_channel()
    sender = wa.customer_phone()
    msgs = [wa.text(f"m{i}", sender=sender) for i in range(3)]
    payload = wa.body(wa.change(channel.phone_number_id, messages=msgs))
    redis = Redis.from_url(redis_url)
    queued_before = await redis.zcard(queue_name)
    responses = await asyncio.gather(*(webhook.post(payload) for _ in range(20)))
    assert [r.status_code for r in responses] == [200] * 20
    rows = await _messages(db, channel)
    assert sorted(r["wamid"] for r in rows) == sorted(m["id"] for m in msgs)
    assert (
        await db.fetchval(
            "select count(*) from public.conversations where workspace_id = $1",
            channel.workspace_id,
        )
        == 1
    )
    queued_after = await redis.zcard(queue_name)
    await redis.aclose()
    assert queued_after - queued_before == 3
    for r in rows:
        assert await _job_exists(redis_url, r["id"])


@pytest.mark.parametrize(
    "text",
    [
        "emoji 👍🏽‍🔥 and RTL ‏مرحبا",
        "nul \u0000 inside",
        "lone surrogate \ud83d here",
        "",
        "x" * 5000,
    ],
    ids=["emoji", "nul", "surrogate", "empty", "long"],
)
async def test_unicode_edge_cases_are_stored(
    webhook: WebhookClient, make_channel: MakeChannel, db: asyncpg.Pool, text: str
) -> None:
    channel = await make_channel()
    msg = wa.text(text, sender=wa.customer_phone())
    raw = json.dumps(wa.body(wa.change(channel.phone_number_id, messages=[msg]))).encode()
    response = await webhook.post(None, raw=raw)
    assert response.status_code == 200, response.text
    rows = await _messages(db, channel)
    assert len(rows) == 1
    stored = json.loads(rows[0]["content"])["body"]
    expected = text.replace("\u0000", "\ufffd").replace("\ud83d", "\ufffd")
    assert stored == expected


async def test_metrics_expose_the_webhook_counters(
    webhook: WebhookClient, make_channel: MakeChannel
) -> None:
    channel = await make_channel()
    msg = wa.text("hola", sender=wa.customer_phone())
    assert (
        await webhook.post(wa.body(wa.change(channel.phone_number_id, messages=[msg])))
    ).status_code == 200
    assert (await webhook.post(None, raw=b"{}", secret=None)).status_code == 401
    body = (await webhook.http.get("/metrics")).text
    assert "# TYPE bridge_webhook_accepted_total counter" in body
    assert 'bridge_webhook_accepted_total{provider="meta"} 1' in body
    assert 'bridge_webhook_rejected_total{reason="missing_signature"} 1' in body
    assert "bridge_messages_stored_total 1" in body


async def test_a_post_without_a_request_id_gets_a_fresh_correlation_id_for_its_jobs(
    webhook: WebhookClient,
    make_channel: MakeChannel,
    db: asyncpg.Pool,
    redis_url: str,
    queue_name: str,
) -> None:
    channel = await make_channel()
    for text in ("hola", "otra vez"):
        msg = wa.text(text, sender=wa.customer_phone())
        response = await webhook.post(wa.body(wa.change(channel.phone_number_id, messages=[msg])))
        assert response.status_code == 200, response.text
    redis = await create_pool(redis_settings(redis_url))
    try:
        ids = []
        for row in await _messages(db, channel):
            job = Job(inbound_job_id(str(row["id"])), redis, _queue_name=queue_name)
            info = await job.info()
            assert info is not None
            ids.append(info.kwargs["correlation_id"])
    finally:
        await redis.aclose()
    assert len(set(ids)) == 2
    assert all(re.fullmatch(r"[0-9a-f]{32}", cid) for cid in ids), ids


@pytest.mark.parametrize(
    "given",
    ["r" * 60_000, "r" * 129, "two words", "tab\there"],
    ids=["60kb", "129_chars", "space", "tab"],
)
async def test_an_oversized_or_unprintable_request_id_is_replaced_not_carried(
    webhook: WebhookClient,
    make_channel: MakeChannel,
    db: asyncpg.Pool,
    redis_url: str,
    queue_name: str,
    given: str,
) -> None:
    # Whatever X-Request-Id a caller sends lands in every log line and job of the request.
    channel = await make_channel()
    msg = wa.text("hola", sender=wa.customer_phone())
    raw = json.dumps(wa.body(wa.change(channel.phone_number_id, messages=[msg]))).encode()
    headers = {
        "content-type": "application/json",
        "x-request-id": given,
        "x-hub-signature-256": sign(raw, APP_SECRET),
    }
    response = await webhook.http.post("/webhooks/whatsapp", content=raw, headers=headers)
    assert response.status_code == 200, response.text
    await webhook.app.state.runtime.doorbell.drained()
    message_id = await db.fetchval("select id from public.messages where wamid = $1", msg["id"])
    redis = await create_pool(redis_settings(redis_url))
    try:
        info = await Job(inbound_job_id(str(message_id)), redis, _queue_name=queue_name).info()
    finally:
        await redis.aclose()
    assert info is not None
    assert re.fullmatch(r"[0-9a-f]{32}", info.kwargs["correlation_id"])


async def test_a_request_id_of_128_visible_characters_is_kept(
    webhook: WebhookClient,
    make_channel: MakeChannel,
    db: asyncpg.Pool,
    redis_url: str,
    queue_name: str,
) -> None:
    channel = await make_channel()
    msg = wa.text("hola", sender=wa.customer_phone())
    raw = json.dumps(wa.body(wa.change(channel.phone_number_id, messages=[msg]))).encode()
    given = "req-" + "~!" * 62
    headers = {
        "content-type": "application/json",
        "x-request-id": given,
        "x-hub-signature-256": sign(raw, APP_SECRET),
    }
    assert (
        await webhook.http.post("/webhooks/whatsapp", content=raw, headers=headers)
    ).status_code == 200
    await webhook.app.state.runtime.doorbell.drained()
    message_id = await db.fetchval("select id from public.messages where wamid = $1", msg["id"])
    redis = await create_pool(redis_settings(redis_url))
    try:
        info = await Job(inbound_job_id(str(message_id)), redis, _queue_name=queue_name).info()
    finally:
        await redis.aclose()
    assert info is not None
    assert info.kwargs["correlation_id"] == given
