"""`bridge replay`: selection by id, time and state, the dry run, the exit code, bad arguments."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg

from tests.bridge.api.test_poison_batch import (
    _batch,
    events_of,
    messages_of,
    refusing,
    run_cli,
)
from tests.fixtures.webhook import Channel, MakeChannel, WebhookClient


async def _failed_event(
    webhook: WebhookClient, make_channel: MakeChannel, db: asyncpg.Pool
) -> tuple[Channel, str, str]:
    """A channel, a failed event of two messages and its poison wamid (the cause removed)."""
    channel = await make_channel()
    body, _, poison = _batch(channel)
    async with refusing(db, poison["id"], "22023"):
        response = await webhook.post(body)
    assert response.json()["failed"] is True
    return channel, response.json()["event_id"], poison["id"]


async def _state(db: asyncpg.Pool, wamid: str) -> list[tuple[str, int, object]]:
    return [(e["status"], e["attempts"], e["replayed_at"]) for e in await events_of(db, wamid)]


async def test_a_dry_run_says_what_it_would_do_and_changes_nothing(
    webhook: WebhookClient, make_channel: MakeChannel, db: asyncpg.Pool, database_url: str
) -> None:
    channel, event_id, poison = await _failed_event(webhook, make_channel, db)
    before = await _state(db, poison)
    code, out, err = await run_cli(
        "replay", "--id", event_id, "--dry-run", "--database-url", database_url
    )
    assert code == 0, out + err
    assert f"{event_id} " in out
    assert "[failed] would store 2 message(s) (0 already stored, 2 new inbound)" in out
    assert "dry run: 1 event(s), 1 ok, 0 failing" in out
    assert await _state(db, poison) == before
    assert await messages_of(db, channel) == 0


async def test_an_event_that_still_fails_exits_1_and_stays_failed(
    webhook: WebhookClient, make_channel: MakeChannel, db: asyncpg.Pool, database_url: str
) -> None:
    channel, event_id, poison = await _failed_event(webhook, make_channel, db)
    async with refusing(db, poison, "23514"):
        dry = await run_cli("replay", "--id", event_id, "--dry-run", "--database-url", database_url)
        assert dry[0] == 1
        assert "would still fail: 23514: refused by the test" in dry[1]
        assert [s[:2] for s in await _state(db, poison)] == [("failed", 1)]
        code, out, _ = await run_cli("replay", "--id", event_id, "--database-url", database_url)
    assert code == 1
    assert "still fail: 23514: refused by the test" in out
    [event] = await events_of(db, poison)
    assert (event["status"], event["error_sqlstate"], event["attempts"]) == ("failed", "23514", 2)
    assert await messages_of(db, channel) == 0


async def test_failed_events_are_selected_by_time_and_state(
    webhook: WebhookClient, make_channel: MakeChannel, db: asyncpg.Pool, database_url: str
) -> None:
    since = (datetime.now(UTC) - timedelta(seconds=1)).isoformat()
    _, _, early = await _failed_event(webhook, make_channel, db)
    await db.execute(
        "update public.whatsapp_webhook_events set created_at = now() - interval '2 days'"
        " where $1 = any(wa_message_ids)",
        early,
    )
    channel, _, poison = await _failed_event(webhook, make_channel, db)
    # A processed event in the range: left alone unless --all.
    processed = await webhook.post(_batch(channel)[0])
    processed_id = processed.json()["event_id"]

    code, out, err = await run_cli("replay", "--since", since, "--database-url", database_url)
    assert code == 0, out + err
    assert processed_id not in out
    assert [s[0] for s in await _state(db, poison)] == ["processed"]
    assert [s[:2] for s in await _state(db, early)] == [("failed", 1)]  # before --since

    until = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    code, out, _ = await run_cli(
        "replay", "--all", "--until", until, "--dry-run", "--database-url", database_url
    )
    assert code == 0
    assert processed_id not in out
    assert "[failed] would store 2 message(s)" in out

    code, out, _ = await run_cli(
        "replay", "--all", "--since", since, "--database-url", database_url
    )
    assert code == 0
    [line] = [x for x in out.splitlines() if x.startswith(processed_id)]
    assert "[processed] store 0 message(s) (2 already stored" in line
    assert await messages_of(db, channel) == 4  # two batches of two, each stored once


async def test_bad_arguments_get_a_clear_error(database_url: str) -> None:
    code, _, err = await run_cli("replay", "--id", "42", "--database-url", database_url)
    assert code == 2
    assert "not an event id (a UUID): '42'" in err
    code, _, err = await run_cli("replay", "--since", "yesterday", "--database-url", database_url)
    assert code == 2
    assert "not an ISO 8601 time: 'yesterday'" in err
    code, _, err = await run_cli("replay", "--failed", "--all")
    assert code == 2
    missing = "00000000-0000-4000-8000-000000000000"
    code, out, _ = await run_cli("replay", "--id", missing, "--database-url", database_url)
    assert code == 1
    assert f"{missing} no such event" in out
