"""Structured JSON logs with a correlation id that travels from the webhook into the jobs."""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from contextvars import ContextVar
from typing import Any

correlation_id: ContextVar[str | None] = ContextVar("correlation_id", default=None)

_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


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
        entry.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD})
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


def configure(level: str = "INFO") -> None:
    """Route the root logger (and so uvicorn's, arq's and httpx's) through the JSON formatter."""
    # The lines carry neither the caller's file and line nor thread or process names: logging
    # need not look them up for every record (the logging HOWTO's "Optimization" section).
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # arq's CLI gives its logger a plain-text handler of its own; one JSON line per event is enough.
    arq_logger = logging.getLogger("arq")
    arq_logger.handlers.clear()
    arq_logger.setLevel(logging.NOTSET)
    arq_logger.propagate = True
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, RedactQueryValues) for f in access.filters):
        access.addFilter(RedactQueryValues())
    for noisy in ("httpx", "httpcore", "hpack"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
