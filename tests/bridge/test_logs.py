"""JSON log lines carry the correlation id of the request or job they belong to."""

from __future__ import annotations

import json
import logging
import random
from datetime import UTC, datetime

from bridge.logs import JsonFormatter, correlation_id


def _line(**extra: object) -> dict[str, object]:
    record = logging.makeLogRecord(
        {"name": "bridge.api.webhook", "levelname": "INFO", "msg": "bridge.message.stored", **extra}
    )
    parsed: dict[str, object] = json.loads(JsonFormatter().format(record))
    return parsed


def test_log_line_is_json_with_the_bound_correlation_id_and_extra_fields() -> None:
    token = correlation_id.set("req-42")
    try:
        line = _line(wamid="wamid.X", conversation_id="c-1")
    finally:
        correlation_id.reset(token)
    assert line["event"] == "bridge.message.stored"
    assert line["level"] == "info"
    assert (line["correlation_id"], line["wamid"], line["conversation_id"]) == (
        "req-42",
        "wamid.X",
        "c-1",
    )


def test_log_line_without_a_correlation_id_has_none() -> None:
    assert "correlation_id" not in _line()


def test_timestamps_are_iso_8601_utc_with_milliseconds_as_datetime_writes_them() -> None:
    formatter = JsonFormatter()
    rng = random.Random(7)
    instants = [rng.uniform(1.6e9, 1.9e9) for _ in range(2000)]
    # On and around second boundaries, where rounding the microseconds carries into the second.
    instants += [1_764_000_000 + d for d in (0.0, 0.9994999, 0.9995, 0.9999995, 0.99999949, 1.0)]
    for created in sorted(instants):
        expected = datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")
        record = logging.makeLogRecord({"msg": "tick", "created": created})
        assert json.loads(formatter.format(record))["ts"] == expected, created
