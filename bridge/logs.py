"""Structured logs with a correlation id that travels from the webhook into the jobs: JSON lines
(the default, for production), or one readable line per event for a terminal
(`BRIDGE_LOG_FORMAT=pretty`, what `make dev` runs), where routine events are quiet."""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import time
from contextvars import ContextVar
from typing import IO, Any, Literal

LogFormat = Literal["json", "pretty"]

correlation_id: ContextVar[str | None] = ContextVar("correlation_id", default=None)

# A record's attributes that are not the event's fields: logging's own, and what uvicorn adds
# for its coloured output.
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}
_HIDDEN = _STANDARD | {"color_message"}


class JsonFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__()
        # The date and time down to the second, kept while records fall in that second: the API
        # writes a line per stored message at INFO.
        self._second: tuple[int, str] = (-1, "")

    def _timestamp(self, created: float) -> str:
        """ISO 8601 in UTC with milliseconds, as `datetime.isoformat(timespec="milliseconds")`
        writes it: microseconds rounded half to even, then cut to milliseconds."""
        second = int(created)
        micros = round((created - second) * 1_000_000)
        if micros == 1_000_000:
            second, micros = second + 1, 0
        cached_second, text = self._second
        if cached_second != second:
            text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = (second, text)
        return f"{text}.{micros // 1000:03d}+00:00"

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": self._timestamp(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        cid = correlation_id.get()
        if cid:
            entry["correlation_id"] = cid
        entry.update({k: v for k, v in record.__dict__.items() if k not in _HIDDEN})
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


# Each `name=value` of a query string, up to the next `&`.
_QUERY_VALUE = re.compile(r"=[^&]*")


class RedactQueryValues(logging.Filter):
    """uvicorn's access line carries the request's path and query string, and the webhook
    handshake's query carries the verify token: every value is replaced, the names are kept."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        # uvicorn's access arguments: client, method, path with query, HTTP version, status.
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            path, mark, query = args[2].partition("?")
            if mark:
                redacted = f"{path}?{_QUERY_VALUE.sub('=<redacted>', query)}"
                record.args = (*args[:2], redacted, *args[3:])
        return True


# Routine lines a terminal need not show at INFO: (logger, how the message starts). They are
# logged at DEBUG instead when the format is pretty (`BRIDGE_LOG_LEVEL=DEBUG` shows them); the
# JSON lines keep them at INFO. Warnings and errors are never among them.
ROUTINE: tuple[tuple[str, str], ...] = (
    # arq: a job starts, a job ends (the sweeper cron's every 10 s), the health record it writes
    # every 10 s (jobs.worker: health_check_interval), Redis's figures at start-up.
    ("arq.worker", "%6.2fs → %s(%s)%s"),
    ("arq.worker", "%6.2fs ← %s ● %s"),
    ("arq.worker", "recording health: "),
    ("arq.worker", "redis_version="),
    # uvicorn's start-up and shutdown steps; "Application startup complete." stays.
    ("uvicorn.error", "Started server process "),
    ("uvicorn.error", "Waiting for application "),
    ("uvicorn.error", "Finished server process "),
)


def is_routine(record: logging.LogRecord) -> bool:
    if record.levelno > logging.INFO:
        return False
    if record.name == "uvicorn.access":
        # client, method, path, HTTP version, status: a 4xx or 5xx answer stays visible.
        args = record.args
        return (
            isinstance(args, tuple)
            and len(args) >= 5
            and isinstance(args[4], int)
            and args[4] < 400
        )
    msg = str(record.msg)
    return any(record.name == name and msg.startswith(start) for name, start in ROUTINE)


class QuietRoutine(logging.Filter):
    """Logs `ROUTINE` lines at DEBUG: shown only when `threshold` is DEBUG or lower."""

    def __init__(self, threshold: int) -> None:
        super().__init__()
        self.threshold = threshold

    def filter(self, record: logging.LogRecord) -> bool:
        if is_routine(record):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return record.levelno >= self.threshold


# SGR codes: the level's colour, then dim keys, a bold event.
_LEVEL_STYLE = {
    logging.DEBUG: ("DEBUG", "2"),
    logging.INFO: ("INFO", "32"),
    logging.WARNING: ("WARN", "33"),
    logging.ERROR: ("ERROR", "31"),
    logging.CRITICAL: ("CRIT", "1;31"),
}
# A value is written bare unless it holds a space, a quote, `=` or nothing: then as a JSON string.
_BARE = re.compile(r"[^\s\"'=]+")


def _value(value: Any) -> str:
    if isinstance(value, str):
        return value if _BARE.fullmatch(value) else json.dumps(value, ensure_ascii=False)
    return json.dumps(value, default=str, ensure_ascii=False, separators=(",", ":"))


class PrettyFormatter(logging.Formatter):
    """One line per event for a person at a terminal: local time, level, process, event, then
    the fields as key=value (the correlation id shortened to 8 characters, `cid`)."""

    def __init__(self, process: str, *, colour: bool) -> None:
        super().__init__()
        self.process = process
        self.colour = colour

    def _paint(self, code: str, text: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.colour else text

    def format(self, record: logging.LogRecord) -> str:
        label, code = _LEVEL_STYLE.get(record.levelno, (record.levelname, "0"))
        millis = int(record.created * 1000) % 1000
        stamp = f"{time.strftime('%H:%M:%S', time.localtime(record.created))}.{millis:03d}"
        parts = [
            self._paint("2", stamp),
            self._paint(code, f"{label:<5}"),
            self._paint("36", f"{self.process:<8}"),
            self._paint("1", record.getMessage().strip()),
        ]
        cid = correlation_id.get()
        fields = {k: v for k, v in record.__dict__.items() if k not in _HIDDEN}
        if cid:
            fields["cid"] = cid[:8]
        parts += [f"{self._paint('2', k + '=')}{_value(v)}" for k, v in fields.items()]
        line = " ".join(parts)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def colour_wanted(stream: IO[str]) -> bool:
    """Colours only on a terminal, and never when NO_COLOR is set to anything (no-color.org)."""
    if os.environ.get("NO_COLOR"):
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


# What each command is called in the pretty lines.
_PROCESSES = {"bridge": "api", "arq": "worker"}


def process_name() -> str:
    name = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "python"
    return _PROCESSES.get(name, name)


def handler(
    level: str = "INFO",
    fmt: LogFormat = "json",
    process: str | None = None,
    stream: IO[str] | None = None,
) -> logging.Handler:
    """A stream handler (standard error by default) writing `fmt` lines."""
    out = stream if stream is not None else sys.stderr
    result = logging.StreamHandler(out)
    if fmt == "pretty":
        result.setFormatter(PrettyFormatter(process or process_name(), colour=colour_wanted(out)))
        threshold = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
        result.addFilter(QuietRoutine(threshold))
    else:
        result.setFormatter(JsonFormatter())
    return result


def settings_handler() -> logging.Handler:
    """The handler the settings ask for (BRIDGE_LOG_LEVEL, BRIDGE_LOG_FORMAT): a factory for
    `ARQ_LOG_CONFIG`."""
    from bridge.settings import Settings

    settings = Settings()
    return handler(settings.BRIDGE_LOG_LEVEL, settings.BRIDGE_LOG_FORMAT)


# `arq --custom-log-dict bridge.logs.ARQ_LOG_CONFIG jobs.worker.WorkerSettings`: arq's own lines
# from the very start (before the worker's startup calls `configure`) in the settings' format.
ARQ_LOG_CONFIG: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"bridge": {"()": "bridge.logs.settings_handler"}},
    "loggers": {"arq": {"handlers": ["bridge"], "level": "INFO", "propagate": False}},
}


def configure(
    level: str = "INFO", fmt: LogFormat | None = None, process: str | None = None
) -> None:
    """Route the root logger (and so uvicorn's, arq's and httpx's) through one formatter: JSON,
    or the pretty lines; `fmt` None reads BRIDGE_LOG_FORMAT from the settings."""
    if fmt is None:
        from bridge.settings import Settings

        fmt = Settings().BRIDGE_LOG_FORMAT
    # The lines carry neither the caller's file and line nor thread or process names: logging
    # need not look them up for every record (the logging HOWTO's "Optimization" section).
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    root = logging.getLogger()
    root.handlers[:] = [handler(level, fmt, process)]
    root.setLevel(level.upper())
    # arq's CLI and uvicorn give their loggers plain-text handlers of their own; one format per
    # stream is what a log shipper parses, so they go through the root's too, and uvicorn's
    # access lines when they are on (`bridge serve --access-log`: off, uvicorn leaves the logger
    # without a handler).
    access = logging.getLogger("uvicorn.access")
    own = ["arq", "uvicorn", "uvicorn.error"] + (["uvicorn.access"] if access.handlers else [])
    for name in own:
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    logging.getLogger("arq").setLevel(logging.NOTSET)
    if not any(isinstance(f, RedactQueryValues) for f in access.filters):
        access.addFilter(RedactQueryValues())
    for noisy in ("httpx", "httpcore", "hpack"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
