"""JSON log lines carry the correlation id of the request or job they belong to; the pretty
lines (`make dev`) are readable, coloured only on a terminal, with routine events quiet."""

from __future__ import annotations

import inspect
import io
import json
import logging
import os
import random
import re
import signal
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import arq.connections
import arq.worker
import pytest

from bridge.logs import (
    ROUTINE,
    JsonFormatter,
    PrettyFormatter,
    configure,
    correlation_id,
    handler,
)
from tests.fixtures.devstack import free_port


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


# The pretty lines (BRIDGE_LOG_FORMAT=pretty, what `make dev` runs).


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _record(level: int = logging.INFO, name: str = "bridge.api.webhook", **extra: object) -> Any:
    return logging.makeLogRecord(
        {
            "name": name,
            "levelno": level,
            "levelname": logging.getLevelName(level),
            "msg": "bridge.message.stored",
            **extra,
        }
    )


def test_a_pretty_line_is_time_level_process_event_and_fields_as_key_value() -> None:
    token = correlation_id.set("fd8ae933a9593fcd2e690ede4e37684c")
    try:
        line = PrettyFormatter("api", colour=False).format(
            _record(
                wamid="wamid.X",
                replies=2,
                handoff=False,
                unanswered=[],
                detail='a "quoted" text',
                empty="",
            )
        )
    finally:
        correlation_id.reset(token)
    assert re.fullmatch(
        r"\d\d:\d\d:\d\d\.\d{3} INFO  api      bridge\.message\.stored wamid=wamid\.X replies=2 "
        r'handoff=false unanswered=\[\] detail="a \\"quoted\\" text" empty="" cid=fd8ae933',
        line,
    ), line


def test_a_pretty_line_carries_the_traceback_below_it() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = _record(logging.ERROR, exc_info=sys.exc_info())
    line = PrettyFormatter("worker", colour=False).format(record)
    first, *rest = line.splitlines()
    assert " ERROR worker   bridge.message.stored" in first
    assert rest[-1] == "ValueError: boom"


@pytest.mark.parametrize(
    ("stream", "no_color", "coloured"),
    [
        (_Terminal(), None, True),
        (_Terminal(), "1", False),
        (io.StringIO(), None, False),  # a pipe or a file
    ],
)
def test_colours_only_on_a_terminal_without_no_color(
    stream: io.StringIO, no_color: str | None, coloured: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if no_color is None:
        monkeypatch.delenv("NO_COLOR", raising=False)
    else:
        monkeypatch.setenv("NO_COLOR", no_color)
    out = handler("INFO", "pretty", "api", stream)
    out.handle(_record(logging.WARNING))
    assert ("\x1b[33mWARN " in stream.getvalue()) is coloured
    assert ("\x1b[" in stream.getvalue()) is coloured


def _arq_job_lines() -> list[logging.LogRecord]:
    """What arq logs around one cron job, and its health record, as it logs them."""
    return [
        logging.makeLogRecord(
            {"name": "arq.worker", "msg": msg, "args": args, "levelno": 20, "levelname": "INFO"}
        )
        for msg, args in [
            ("%6.2fs → %s(%s)%s", (0.02, "cron:sweep", "", "")),
            ("%6.2fs ← %s ● %s", (0.01, "cron:sweep", 0)),
            ("recording health: %s", ("Dec-03 11:43:26 j_complete=2",)),
        ]
    ]


def test_pretty_lines_keep_routine_events_quiet_at_info_and_show_them_at_debug() -> None:
    routine = [
        *_arq_job_lines(),
        logging.makeLogRecord(
            {
                "name": "uvicorn.access",
                "msg": '%s - "%s %s HTTP/%s" %d',
                "args": ("127.0.0.1:5", "GET", "/healthz", "1.1", 200),
                "levelno": 20,
                "levelname": "INFO",
            }
        ),
    ]
    shown = [
        _record(),
        _record(logging.WARNING, name="arq.worker", msg="%6.2fs ! %s max retries %d exceeded"),
        logging.makeLogRecord(
            {
                "name": "uvicorn.access",
                "msg": '%s - "%s %s HTTP/%s" %d',
                "args": ("127.0.0.1:5", "POST", "/webhooks/whatsapp", "1.1", 401),
                "levelno": 20,
                "levelname": "INFO",
            }
        ),
    ]
    info, debug = io.StringIO(), io.StringIO()
    for stream, level in ((info, "INFO"), (debug, "DEBUG")):
        out = handler(level, "pretty", "worker", stream)
        for record in [*routine, *shown]:
            out.handle(logging.makeLogRecord(record.__dict__))
    assert len(info.getvalue().splitlines()) == len(shown)
    assert "cron:sweep" not in info.getvalue()
    assert " WARN  worker" in info.getvalue()
    assert "401" in info.getvalue()
    lines = debug.getvalue().splitlines()
    assert len(lines) == len(routine) + len(shown)
    assert " DEBUG worker   0.02s → cron:sweep()" in lines[0]


def test_the_arq_lines_quieted_are_the_ones_arq_writes() -> None:
    source = inspect.getsource(arq.worker) + inspect.getsource(arq.connections)
    for name, start in ROUTINE:
        if name.startswith("arq."):
            assert f"'{start}" in source, start


def test_json_stays_the_default_with_every_event_at_its_level(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)  # no .env
    monkeypatch.delenv("BRIDGE_LOG_FORMAT", raising=False)
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        configure("INFO")
        (installed,) = root.handlers
        assert isinstance(installed.formatter, JsonFormatter)
        stream = io.StringIO()
        out = handler("INFO", stream=stream)
        for record in _arq_job_lines():
            out.handle(record)
        lines = [json.loads(line) for line in stream.getvalue().splitlines()]
        assert [(line["level"], line["logger"]) for line in lines] == [("info", "arq.worker")] * 3
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)


def test_json_mode_writes_uvicorns_own_lines_as_json_too(tmp_path: Path) -> None:
    """`bridge serve`, for real: its start-up and shutdown lines come from uvicorn's loggers,
    which carry handlers of their own; a log shipper reading the stream gets JSON only."""
    env = {
        **os.environ,
        "BRIDGE_LOG_FORMAT": "json",
        "WHATSAPP_APP_SECRET": "secret",
        "SUPABASE_URL": "http://127.0.0.1:9",
    }
    with subprocess.Popen(
        [str(Path(sys.executable).parent / "bridge"), "serve", "--port", str(free_port())],
        cwd=tmp_path,  # no .env
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    ) as serve:
        assert serve.stderr is not None
        seen: list[str] = []
        for line in serve.stderr:
            seen.append(line)
            if "Application startup complete" in line:
                break
        serve.send_signal(signal.SIGINT)
        seen += serve.stderr.readlines()
    lines = [json.loads(line) for line in seen]
    events = [line["event"] for line in lines if line["logger"].startswith("uvicorn")]
    assert "Application startup complete." in events
    assert "Application shutdown complete." in events
    assert not [line for line in lines if "color_message" in line]
