"""Values a webhook may carry that Postgres cannot take or the worker cannot read back: timestamps
outside any believable window (a BC date once stored, beyond what `to_timestamp` accepts, not a
number at all) and numbers Python decodes as infinity. Each is stored (the receive time for a
timestamp, its text for a number) with the value given kept raw: never a 503 on every retry,
never a row that wedges a worker."""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import pytest

from bridge.api.payloads import (
    EARLIEST_TIMESTAMP,
    MAX_CLOCK_AHEAD_SECONDS,
    Webhook,
    loads_storable,
    sane_timestamp,
)
from tests.factories import whatsapp as wa
from tests.fixtures.webhook import Channel, WebhookClient

MakeChannel = Callable[..., Awaitable[Channel]]

NOW = 1_764_745_200  # 2025-12-03T07:00:00Z


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (str(NOW), NOW),
        (NOW, NOW),
        (f" {NOW} ", NOW),
        (str(EARLIEST_TIMESTAMP), EARLIEST_TIMESTAMP),
        (str(NOW + MAX_CLOCK_AHEAD_SECONDS), NOW + MAX_CLOCK_AHEAD_SECONDS),
        (str(EARLIEST_TIMESTAMP - 1), None),  # 1999
        (str(NOW + MAX_CLOCK_AHEAD_SECONDS + 1), None),
        ("-99999999999", None),  # a BC date for Postgres' to_timestamp
        ("100000000000000000000", None),  # beyond what to_timestamp accepts
        ("9" * 5000, None),
        ("yesterday", None),
        ("1764745200.5", None),
        (1764745200.0, None),
        (float("inf"), None),
        (True, None),
        ("", None),
        (None, None),
        ({"seconds": NOW}, None),
    ],
)
def test_only_integer_times_in_the_believable_window_are_kept(
    given: Any, expected: int | None
) -> None:
    assert sane_timestamp(given, now=NOW) == expected


def test_numbers_python_cannot_hold_stay_their_text() -> None:
    body = b'{"a": 1e400, "b": -1e400, "c": NaN, "d": Infinity, "e": 1.5, "f": 12, "g": ' + (
        b"7" * 5000 + b"}"
    )
    assert loads_storable(body) == {
        "a": "1e400",
        "b": "-1e400",
        "c": "NaN",
        "d": "Infinity",
        "e": 1.5,
        "f": 12,
        "g": "7" * 5000,
    }


def _with_timestamp(msg: dict[str, Any], value: Any) -> dict[str, Any]:
    return {**msg, "timestamp": value}


OUT_OF_RANGE = ["-99999999999", "100000000000000000000", "yesterday", "", 99999999999999]


async def _rows(db: asyncpg.Pool, channel: Channel) -> dict[str, asyncpg.Record]:
    rows = await db.fetch(
        "select wamid, timestamp, content, extract(epoch from now() - timestamp) as age"
        " from public.messages where workspace_id = $1",
        channel.workspace_id,
    )
    return {r["wamid"]: r for r in rows}


async def test_out_of_range_timestamps_are_stored_as_the_receive_time_with_the_raw_kept(
    webhook: WebhookClient, make_channel: MakeChannel, db: asyncpg.Pool
) -> None:
    channel = await make_channel()
    sender = wa.customer_phone()
    msgs = [_with_timestamp(wa.text(f"hola {v!r}", sender=sender), v) for v in OUT_OF_RANGE]
    sent = wa.text("ya enviado", sender=sender)
    status = _with_timestamp(wa.status(sent["id"], "delivered", recipient=sender), "-99999999999")
    response = await webhook.post(
        wa.body(wa.change(channel.phone_number_id, messages=msgs, statuses=[status]))
    )
    assert response.status_code == 200, response.text

    rows = await _rows(db, channel)
    assert set(rows) == {m["id"] for m in msgs}
    for msg in msgs:
        row = rows[msg["id"]]
        assert row["timestamp"].year >= 2000
        assert abs(float(row["age"])) < 60, (msg["timestamp"], row["timestamp"])
        if msg["timestamp"] != "":
            assert json.loads(row["content"])["raw"]["timestamp"] == msg["timestamp"]
    event = await db.fetchval(
        "select payload from public.whatsapp_webhook_events where $1 = any(wa_message_ids)",
        msgs[0]["id"],
    )
    stored = json.loads(event)["entry"][0]["changes"][0]["value"]
    assert [m["timestamp"] for m in stored["messages"]] == OUT_OF_RANGE
    orphan_time = await db.fetchval(
        "select extract(epoch from now() - status_timestamp) from public.message_status_orphans"
        " where wamid = $1",
        sent["id"],
    )
    assert orphan_time is not None
    assert abs(float(orphan_time)) < 60


async def test_a_believable_timestamp_is_kept_as_given(
    webhook: WebhookClient, make_channel: MakeChannel, db: asyncpg.Pool
) -> None:
    channel = await make_channel()
    msg = wa.text("hola", sender=wa.customer_phone(), ts=int(time.time()) - 3600)
    response = await webhook.post(wa.body(wa.change(channel.phone_number_id, messages=[msg])))
    assert response.status_code == 200, response.text
    row = (await _rows(db, channel))[msg["id"]]
    assert int(row["timestamp"].timestamp()) == int(msg["timestamp"])
    assert "timestamp" not in json.loads(row["content"])["raw"]


async def test_numbers_beyond_any_range_are_stored_as_their_text(
    webhook: WebhookClient, make_channel: MakeChannel, db: asyncpg.Pool
) -> None:
    channel = await make_channel()
    msg = wa.text("hola", sender=wa.customer_phone())
    template = json.dumps(
        wa.body(
            wa.change(
                channel.phone_number_id,
                messages=[{**msg, "timestamp": "TS", "location": {"latitude": "LAT"}}],
            )
        )
    )
    body = template.replace('"TS"', "1e400").replace('"LAT"', "-1e400").encode()
    response = await webhook.post(None, raw=body)
    assert response.status_code == 200, response.text
    row = (await _rows(db, channel))[msg["id"]]
    assert abs(float(row["age"])) < 60
    content = json.loads(row["content"])
    assert content["raw"]["timestamp"] == "1e400"
    assert content["raw"]["location"] == {"latitude": "-1e400"}


def test_the_intake_keeps_what_the_normaliser_could_not_use() -> None:
    """The batch's rows carry only values SQL accepts; the payload keeps them all."""
    payload = loads_storable(
        json.dumps(
            wa.body(wa.change("1", messages=[{**wa.text("hola", sender="57"), "timestamp": "T"}]))
        ).replace('"T"', "-1e400")
    )
    [row] = Webhook.model_validate(payload).normalise(now=NOW).messages
    assert row["timestamp"] is None
    assert row["content"]["raw"]["timestamp"] == "-1e400"
