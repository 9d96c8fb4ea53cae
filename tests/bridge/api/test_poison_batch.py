"""A batch the database refuses for a data reason is answered 200 and kept as a failed event (never
retried forever, never lost); a transient failure still answers 503; `bridge replay` stores it
once the cause is gone."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from arq import create_pool
from arq.jobs import Job

from bridge.queue import inbound_job_id, redis_settings
from tests.factories import whatsapp as wa
from tests.fixtures.webhook import Channel, MakeChannel, WebhookClient

ROOT = Path(__file__).resolve().parents[3]


@asynccontextmanager
async def refusing(db: asyncpg.Pool, wamid: str, sqlstate: str) -> AsyncIterator[None]:
    """While open, inserting the message with this wamid raises `sqlstate`: a cause that can be
    removed, standing in for a payload today's SQL cannot take."""
    name = f"test_refuse_{wamid.replace('.', '_').replace('=', '_').replace('-', '_')}"[:60]
    await db.execute(f"""
        create function public.{name}() returns trigger language plpgsql as $$ begin
          if new.wamid = '{wamid}' then
            raise exception 'refused by the test' using errcode = '{sqlstate}';
          end if;
          return new; end $$;
        create trigger {name} before insert on public.messages
          for each row execute function public.{name}();
    """)
    try:
        yield
    finally:
        await db.execute(f"drop trigger {name} on public.messages; drop function public.{name}();")


async def run_cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """`bridge …` as an operator runs it, in its own process."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bridge.cli",
        *args,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def events_of(db: asyncpg.Pool, wamid: str) -> list[asyncpg.Record]:
    return await db.fetch(
        "select id, status, error_message, error_sqlstate, attempts, replayed_at, payload_sha256,"
        " phone_number_ids, wa_message_ids from public.whatsapp_webhook_events"
        " where $1 = any(wa_message_ids) order by created_at",
        wamid,
    )


async def messages_of(db: asyncpg.Pool, channel: Channel) -> int:
    count: int = await db.fetchval(
        "select count(*) from public.messages where workspace_id = $1", channel.workspace_id
    )
    return count


def _batch(channel: Channel) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    sender = wa.customer_phone()
    first = wa.text("first", sender=sender)
    poison = wa.text("second", sender=sender)
    body = wa.body(wa.change(channel.phone_number_id, messages=[first, poison]))
    return body, first, poison


async def test_a_poison_batch_is_kept_answered_200_and_stored_once_by_replay(
    webhook: WebhookClient,
    make_channel: MakeChannel,
    db: asyncpg.Pool,
    database_url: str,
    redis_url: str,
    queue_name: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    channel = await make_channel()
    body, first, poison = _batch(channel)
    metrics = webhook.app.state.runtime.metrics
    async with refusing(db, poison["id"], "23514"):
        with caplog.at_level(logging.ERROR, logger="bridge.api.webhook"):
            response = await webhook.post(body)
        assert response.status_code == 200, response.text
        assert response.json()["failed"] is True
        event_id = response.json()["event_id"]
        [event] = await events_of(db, poison["id"])
        assert str(event["id"]) == event_id
        assert (event["status"], event["error_sqlstate"], event["attempts"]) == (
            "failed",
            "23514",
            1,
        )
        assert "refused by the test" in event["error_message"]
        assert event["phone_number_ids"] == [channel.phone_number_id]
        assert set(event["wa_message_ids"]) == {first["id"], poison["id"]}
        assert await messages_of(db, channel) == 0  # the whole batch's work rolled back
        assert metrics.value("bridge_webhook_failed_batches_total") == 1
        assert "bridge_webhook_failed_batches_total 1" in (await webhook.http.get("/metrics")).text
        [line] = [r for r in caplog.records if r.getMessage() == "bridge.api.webhook.batch_failed"]
        assert line.levelno == logging.ERROR
        assert line.__dict__["event_id"] == event_id
        assert line.__dict__["sqlstate"] == "23514"

        # A redelivery of the same body while the cause is there: the same event, one more try.
        again = await webhook.post(body)
        assert again.status_code == 200
        assert again.json()["event_id"] == event_id
        [event] = await events_of(db, poison["id"])
        assert event["attempts"] == 2

    # The cause is gone: the operator replays the failed event.
    code, out, err = await run_cli(
        "replay",
        "--id",
        event_id,
        "--database-url",
        database_url,
        env={"REDIS_URL": redis_url, "ARQ_QUEUE_NAME": queue_name},
    )
    assert code == 0, out + err
    assert "store 2 message(s) (0 already stored, 2 new inbound)" in out
    assert "rang the worker for 2 new inbound message(s)" in out
    [event] = await events_of(db, poison["id"])
    assert (event["status"], event["error_sqlstate"], event["attempts"]) == ("processed", None, 3)
    assert event["replayed_at"] is not None
    assert await messages_of(db, channel) == 2
    # The replay rang the worker's doorbell for the messages it stored.
    redis = await create_pool(redis_settings(redis_url))
    try:
        for msg in (first, poison):
            message_id = await db.fetchval(
                "select id from public.messages where wamid = $1", msg["id"]
            )
            job = Job(inbound_job_id(str(message_id)), redis, _queue_name=queue_name)
            assert await job.info() is not None
    finally:
        await redis.aclose()

    # Replaying again, or the provider redelivering, stores nothing twice.
    code, out, _ = await run_cli("replay", "--id", event_id, "--database-url", database_url)
    assert code == 0
    assert "store 0 message(s) (2 already stored, 0 new inbound)" in out
    assert (await webhook.post(body)).status_code == 200
    assert await messages_of(db, channel) == 2
    assert [e["status"] for e in await events_of(db, poison["id"])] == ["processed", "processed"]


@pytest.mark.parametrize("sqlstate", ["22023", "23505", "42883", "P0001", "XX001"])
async def test_a_data_error_is_kept_as_failed_and_answered_200(
    webhook: WebhookClient, make_channel: MakeChannel, db: asyncpg.Pool, sqlstate: str
) -> None:
    channel = await make_channel()
    body, _, poison = _batch(channel)
    async with refusing(db, poison["id"], sqlstate):
        response = await webhook.post(body)
    assert response.status_code == 200, response.text
    [event] = await events_of(db, poison["id"])
    assert (event["status"], event["error_sqlstate"]) == ("failed", sqlstate)
    assert event["payload_sha256"] is not None


@pytest.mark.parametrize(
    "sqlstate", ["40001", "40P01", "55P03", "53300", "57P01", "57014", "08006"]
)
async def test_a_transient_failure_answers_503_and_keeps_nothing(
    webhook: WebhookClient, make_channel: MakeChannel, db: asyncpg.Pool, sqlstate: str
) -> None:
    channel = await make_channel()
    body, _, poison = _batch(channel)
    metrics = webhook.app.state.runtime.metrics
    async with refusing(db, poison["id"], sqlstate):
        response = await webhook.post(body)
    assert response.status_code == 503
    assert response.json() == {"error": "store_unavailable"}
    assert await events_of(db, poison["id"]) == []  # the provider retries; nothing half-stored
    assert await messages_of(db, channel) == 0
    assert metrics.value("bridge_webhook_failed_batches_total") == 0
    assert "bridge_webhook_failed_batches_total 0" in (await webhook.http.get("/metrics")).text
    # Once the database is well again, the provider's retry is stored whole.
    assert (await webhook.post(body)).status_code == 200
    assert await messages_of(db, channel) == 2


async def test_concurrent_failing_deliveries_of_one_body_keep_one_event(
    webhook: WebhookClient, make_channel: MakeChannel, db: asyncpg.Pool, database_url: str
) -> None:
    channel = await make_channel()
    body, _, poison = _batch(channel)
    async with refusing(db, poison["id"], "22P02"):
        answers = await asyncio.gather(*(webhook.post(body) for _ in range(4)))
    assert [a.status_code for a in answers] == [200] * 4
    [event] = await events_of(db, poison["id"])
    assert {a.json()["event_id"] for a in answers} == {str(event["id"])}
    assert (event["status"], event["attempts"]) == ("failed", 4)
    # Two replays at once: one stores, the other finds everything stored.
    results = await asyncio.gather(
        *(run_cli("replay", "--id", str(event["id"]), "--database-url", database_url) for _ in "ab")
    )
    assert [code for code, _, _ in results] == [0, 0]
    stored = sorted("store 2 message(s) (0 already stored" in out for _, out, _ in results)
    assert stored == [False, True]
    assert await messages_of(db, channel) == 2
