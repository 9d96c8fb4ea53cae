"""What the webhook refuses, and what it does when Postgres or Redis is away."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import pytest
from arq import create_pool
from arq.jobs import Job
from pydantic import SecretStr

from bridge.api.app import create_app
from bridge.queue import inbound_job_id, redis_settings
from bridge.settings import ConfigError, Settings
from tests.factories import whatsapp as wa
from tests.fixtures.devstack import free_port
from tests.fixtures.webhook import (
    Channel,
    WebhookClient,
    open_webhook_client,
    settings_for,
)

MakeChannel = Callable[..., Awaitable[Channel]]


async def _counts(db: asyncpg.Pool) -> tuple[int, int, int]:
    row = await db.fetchrow(
        "select (select count(*) from public.whatsapp_webhook_events) as events,"
        " (select count(*) from public.messages) as messages,"
        " (select count(*) from public.conversations) as conversations"
    )
    assert row is not None
    return (row["events"], row["messages"], row["conversations"])


def _valid_body(pnid: str) -> dict[str, Any]:
    return wa.body(wa.change(pnid, messages=[wa.text("hola", sender=wa.customer_phone())]))


def _cases(pnid: str) -> list[tuple[str, dict[str, Any], int, str]]:
    good = _valid_body(pnid)
    return [
        ("unsigned", {"raw": json.dumps(good).encode(), "secret": None}, 401, "missing_signature"),
        (
            "wrong_signature",
            {"raw": json.dumps(good).encode(), "secret": "not-the-secret"},
            401,
            "bad_signature",
        ),
        (
            "malformed_json",
            {"raw": b'{"object": "whatsapp_business_account", "entry": ['},
            400,
            "invalid_json",
        ),
        ("not_utf8", {"raw": b"\xff\xfe{}"}, 400, "invalid_json"),
        ("json_array", {"raw": b"[]"}, 400, "wrong_object"),
        (
            "oversized",
            {"raw": b'{"object": "' + b"x" * (3 * 1024 * 1024 + 10) + b'"}'},
            413,
            "body_too_large",
        ),
        (
            "nested_10k_deep",
            {"raw": b'{"object": "whatsapp_business_account", "entry": ' + _deep(10_000) + b"}"},
            400,
            "json_too_deep",
        ),
        (
            "nested_65_deep",
            {"raw": b'{"object": "whatsapp_business_account", "entry": ' + _deep(64) + b"}"},
            400,
            "json_too_deep",
        ),
    ]


def _deep(levels: int) -> bytes:
    return b"[" * levels + b"]" * levels


@pytest.mark.parametrize("case", range(8))
async def test_bad_input_gets_its_status_and_changes_nothing(
    webhook: WebhookClient, make_channel: MakeChannel, db: asyncpg.Pool, case: int
) -> None:
    channel = await make_channel()
    name, kwargs, status, reason = _cases(channel.phone_number_id)[case]
    metrics = webhook.app.state.runtime.metrics
    rejected_before = metrics.value("bridge_webhook_rejected_total", reason=reason)
    before = await _counts(db)
    response = await webhook.post(
        kwargs.get("payload"), **{k: v for k, v in kwargs.items() if k != "payload"}
    )
    assert response.status_code == status, (name, response.text)
    assert response.json()["error"] == reason
    assert await _counts(db) == before
    assert metrics.value("bridge_webhook_rejected_total", reason=reason) == rejected_before + 1


def _unreadable(pnid: str) -> dict[str, dict[str, Any]]:
    """Signed JSON objects the normaliser cannot read: the provider's all the same."""
    good = _valid_body(pnid)
    no_id = json.loads(json.dumps(good))
    del no_id["entry"][0]["changes"][0]["value"]["messages"][0]["id"]
    messages_not_list = json.loads(json.dumps(good))
    messages_not_list["entry"][0]["changes"][0]["value"]["messages"] = "hola"
    no_metadata = json.loads(json.dumps(good))
    del no_metadata["entry"][0]["changes"][0]["value"]["metadata"]
    return {
        "wrong_object": {**good, "object": "page"},
        "message_without_id": no_id,
        "messages_not_a_list": messages_not_list,
        "change_without_metadata": no_metadata,
        "entry_not_a_list": {"object": "whatsapp_business_account", "entry": {"id": 1}},
    }


@pytest.mark.parametrize(
    "name",
    [
        "wrong_object",
        "message_without_id",
        "messages_not_a_list",
        "change_without_metadata",
        "entry_not_a_list",
    ],
)
async def test_a_signed_body_the_normaliser_cannot_read_is_kept_as_failed_not_refused(
    webhook: WebhookClient, make_channel: MakeChannel, db: asyncpg.Pool, name: str
) -> None:
    """A 400 would make the provider retry for days and then drop it: it is kept, failed, for
    `bridge replay` once the normaliser reads it, and a redelivery adds no second event."""
    channel = await make_channel()
    payload = _unreadable(channel.phone_number_id)[name]
    events, messages, conversations = await _counts(db)
    first = await webhook.post(payload)
    again = await webhook.post(payload)
    assert first.status_code == again.status_code == 200, first.text
    assert first.json()["failed"] is True
    event_id = first.json()["event_id"]
    assert again.json()["event_id"] == event_id
    assert await _counts(db) == (events + 1, messages, conversations)
    row = await db.fetchrow(
        "select status, error_sqlstate, error_message, attempts, payload"
        " from public.whatsapp_webhook_events where id = $1",
        uuid.UUID(event_id),
    )
    assert row is not None
    assert (row["status"], row["error_sqlstate"], row["attempts"]) == ("failed", "WBR01", 2)
    assert "payload refused" in row["error_message"]
    assert json.loads(row["payload"]) == payload


def test_refuses_to_start_without_a_webhook_secret() -> None:
    with pytest.raises(ConfigError, match="WHATSAPP_APP_SECRET"):
        create_app(Settings(_env_file=None))
    # Explicit insecure dev mode is the only way around it.
    create_app(Settings(_env_file=None, BRIDGE_INSECURE_DEV=True))


async def test_supabase_unreachable_answers_503_and_stores_nothing(
    redis_url: str, queue_name: str, make_channel: MakeChannel, db: asyncpg.Pool
) -> None:
    channel = await make_channel()
    dead = f"http://127.0.0.1:{free_port()}"
    client, close = await open_webhook_client(settings_for(dead, redis_url, queue_name))
    try:
        before = await _counts(db)
        response = await client.post(_valid_body(channel.phone_number_id))
        assert response.status_code == 503
        assert response.json() == {"error": "store_unavailable"}
        assert await _counts(db) == before
    finally:
        await close()


async def test_database_failure_mid_batch_answers_503_and_writes_nothing(
    webhook: WebhookClient, make_channel: MakeChannel, db: asyncpg.Pool
) -> None:
    channel = await make_channel()
    sender = wa.customer_phone()
    poison = wa.text("second", sender=sender)
    # A trigger stands in for the database failing after the first message of the batch.
    await db.execute(f"""
        create or replace function public.test_fail_on_poison() returns trigger
        language plpgsql as $$ begin
          if new.wamid = '{poison["id"]}' then raise exception 'disk full' using errcode = '53100';
          end if; return new; end $$;
        create trigger test_fail_on_poison before insert on public.messages
          for each row execute function public.test_fail_on_poison();
    """)
    try:
        before = await _counts(db)
        body = wa.body(
            wa.change(channel.phone_number_id, messages=[wa.text("first", sender=sender), poison])
        )
        response = await webhook.post(body)
        assert response.status_code == 503
        assert await _counts(db) == before  # the raw event and the first message rolled back
    finally:
        await db.execute(
            "drop trigger test_fail_on_poison on public.messages;"
            " drop function public.test_fail_on_poison();"
        )
    # Once the database is healthy again, the provider's retry is stored.
    assert (await webhook.post(body)).status_code == 200
    assert (
        await db.fetchval(
            "select count(*) from public.messages where workspace_id = $1", channel.workspace_id
        )
        == 2
    )


async def test_redis_down_still_answers_200_and_keeps_the_message(
    devstack_url: str, queue_name: str, make_channel: MakeChannel, db: asyncpg.Pool
) -> None:
    channel = await make_channel()
    settings = settings_for(devstack_url, f"redis://127.0.0.1:{free_port()}/0", queue_name)
    client, close = await open_webhook_client(settings)
    try:
        msg = wa.text("hola", sender=wa.customer_phone())
        response = await client.post(wa.body(wa.change(channel.phone_number_id, messages=[msg])))
        assert response.status_code == 200
        metrics = client.app.state.runtime.metrics
        assert metrics.value("bridge_enqueue_failed_total") == 1
    finally:
        await close()
    row = await db.fetchrow(
        "select processed_by_agent from public.messages where wamid = $1", msg["id"]
    )
    assert row is not None
    assert row["processed_by_agent"] is False  # left for the sweeper


def test_settings_read_secrets_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WHATSAPP_APP_SECRET", "from-env")
    settings = Settings(_env_file=None)
    assert isinstance(settings.WHATSAPP_APP_SECRET, SecretStr)
    assert settings.WHATSAPP_APP_SECRET.get_secret_value() == "from-env"


async def test_json_nested_within_the_limit_is_stored_whole(
    webhook: WebhookClient, make_channel: MakeChannel, db: asyncpg.Pool
) -> None:
    # Sixty levels in a field nobody maps, and brackets in a text (they are not nesting).
    channel = await make_channel()
    msg = wa.text("[[[{{{" * 2000, sender=wa.customer_phone())
    nested: Any = "bottom"
    for _ in range(54):
        nested = [nested]
    msg["unmapped"] = nested
    response = await webhook.post(wa.body(wa.change(channel.phone_number_id, messages=[msg])))
    assert response.status_code == 200, response.text
    payload = await db.fetchval(
        "select payload from public.whatsapp_webhook_events where $1 = any(wa_message_ids)",
        msg["id"],
    )
    stored = json.loads(payload)["entry"][0]["changes"][0]["value"]["messages"][0]
    assert stored["unmapped"] == nested
    assert stored["text"]["body"] == "[[[{{{" * 2000


@pytest.mark.parametrize("blank", ["", "  ", "\t\n"], ids=["empty", "spaces", "whitespace"])
def test_a_blank_app_secret_is_no_secret_and_the_api_refuses_to_start(
    blank: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ConfigError, match="WHATSAPP_APP_SECRET"):
        create_app(Settings(_env_file=None, WHATSAPP_APP_SECRET=blank))
    monkeypatch.setenv("WHATSAPP_APP_SECRET", blank)
    monkeypatch.setenv("WHATSAPP_360DIALOG_WEBHOOK_SECRET", blank)
    with pytest.raises(ConfigError, match="WHATSAPP_APP_SECRET"):
        create_app(Settings(_env_file=None))


@pytest.mark.parametrize("blank", ["", "   "], ids=["empty", "spaces"])
async def test_a_blank_360dialog_secret_refuses_bodies_signed_with_it(
    devstack_url: str,
    redis_url: str,
    queue_name: str,
    make_channel: MakeChannel,
    db: asyncpg.Pool,
    blank: str,
) -> None:
    # The API starts (the Meta secret is set) but must not take 360dialog's header signed with
    # the blank key: anyone can compute that signature.
    channel = await make_channel(provider="360dialog")
    settings = settings_for(
        devstack_url, redis_url, queue_name, WHATSAPP_360DIALOG_WEBHOOK_SECRET=SecretStr(blank)
    )
    client, close = await open_webhook_client(settings)
    try:
        before = await _counts(db)
        for key in ("", blank):
            response = await client.post(
                _valid_body(channel.phone_number_id), secret=key, header="X-360Dialog-Signature"
            )
            assert response.status_code == 401, response.text
        assert await _counts(db) == before
    finally:
        await close()


@pytest.mark.parametrize("blank", ["", "  "], ids=["empty", "spaces"])
async def test_a_blank_verify_token_never_matches(
    devstack_url: str, redis_url: str, queue_name: str, blank: str
) -> None:
    settings = settings_for(
        devstack_url, redis_url, queue_name, WHATSAPP_VERIFY_TOKEN=SecretStr(blank)
    )
    client, close = await open_webhook_client(settings)
    try:
        for given in ("", blank):
            params = {"hub.mode": "subscribe", "hub.verify_token": given, "hub.challenge": "42"}
            response = await client.http.get("/webhooks/whatsapp", params=params)
            assert response.status_code == 403, response.text
    finally:
        await close()


async def test_a_batch_committed_after_the_answer_was_due_still_rings_the_doorbell(
    devstack_url: str,
    redis_url: str,
    queue_name: str,
    make_channel: MakeChannel,
    db: asyncpg.Pool,
) -> None:
    channel = await make_channel()
    msg = wa.text("hola", sender=wa.customer_phone())
    settings = settings_for(devstack_url, redis_url, queue_name, BRIDGE_DB_TIMEOUT_SECONDS=0.5)
    client, close = await open_webhook_client(settings)
    try:
        # Another session holds a lock the ingest needs: the store waits past the answer.
        async with db.acquire() as conn:
            locked = conn.transaction()
            await locked.start()
            try:
                await conn.execute("lock table public.messages in exclusive mode")
                response = await client.post(
                    wa.body(wa.change(channel.phone_number_id, messages=[msg]))
                )
                assert response.status_code == 503
                assert response.json() == {"error": "store_unavailable"}
                await asyncio.sleep(0.5)
            finally:
                await locked.rollback()
        redis = await create_pool(redis_settings(redis_url))
        try:
            info = None
            for _ in range(100):
                message_id = await db.fetchval(
                    "select id from public.messages where wamid = $1", msg["id"]
                )
                if message_id is not None:
                    job = Job(inbound_job_id(str(message_id)), redis, _queue_name=queue_name)
                    info = await job.info()
                    if info is not None:
                        break
                await asyncio.sleep(0.05)
        finally:
            await redis.aclose()
        assert message_id is not None, "the store was abandoned"
        assert info is not None, "committed after the 503, but nobody rang for it"
        metrics = client.app.state.runtime.metrics
        assert metrics.value("bridge_webhook_stored_late_total") == 1
        # The provider's retry of the 503 is a duplicate: no second message, no second job.
        retry = await client.post(wa.body(wa.change(channel.phone_number_id, messages=[msg])))
        assert retry.status_code == 200
        assert retry.json()["received"] is True
        count = await db.fetchval(
            "select count(*) from public.messages where wamid = $1", msg["id"]
        )
        assert count == 1
    finally:
        await close()
