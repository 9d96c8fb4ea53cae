"""`bridge serve`: uvicorn around the app factory, with connections that cannot hold it hostage.

uvicorn alone keeps a connection that never sends a request for as long as the client likes, and
its `limit_concurrency` counts open connections as well as requests in flight: a few hundred
idle sockets would make every delivery a 503. `GuardedHttpToolsProtocol` closes a connection
that has not sent a request's headers within `BRIDGE_HEADER_TIMEOUT_SECONDS` and counts only
requests in flight against the limit; the body gets its own deadline in the webhook.
"""

from __future__ import annotations

import asyncio
import functools
import os
import sys
import tempfile
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from bridge.metrics import MULTIPROC_DIR_ENV
from bridge.settings import ConfigError, Settings


@functools.cache
def _header_timeout() -> float:
    # Read once per process: uvicorn builds a protocol per connection, and its worker processes
    # (`--workers`) inherit the environment, not objects.
    return Settings().BRIDGE_HEADER_TIMEOUT_SECONDS


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a header deadline and an in-flight request limit."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_flight_limit: int | None = self.limit_concurrency
        self._header_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_deadline()
        super().connection_lost(exc)

    def on_headers_complete(self) -> None:
        self._disarm_header_deadline()
        # uvicorn answers 503 here when `limit_concurrency` is set and either its open
        # connections or its running requests reach it; set it only when the requests do.
        limit = self._in_flight_limit
        self.limit_concurrency = limit if limit is not None and len(self.tasks) >= limit else None
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        pipelined = bool(self.pipeline)
        super().on_response_complete()
        # A kept-alive connection owes the next request's headers within the same deadline
        # (uvicorn's keep-alive timer stops at the first byte, so it cannot bound a slow one).
        if not pipelined and not self.transport.is_closing():
            self._arm_header_deadline()

    def _arm_header_deadline(self) -> None:
        self._disarm_header_deadline()
        self._header_deadline = self.loop.call_later(_header_timeout(), self._header_too_late)

    def _disarm_header_deadline(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _header_too_late(self) -> None:
        self._header_deadline = None
        if not self.transport.is_closing():
            self.transport.close()


def serve(
    *,
    host: str,
    port: int,
    workers: int = 1,
    limit_concurrency: int | None = None,
    access_log: bool = False,
) -> int:
    try:
        Settings().check_webhook_secrets()
    except ConfigError as exc:
        # Before uvicorn starts: a clear line and exit status 2, not a traceback per worker.
        sys.stderr.write(f"bridge serve: {exc}\n")
        return 2
    if workers > 1:
        # One set of counts over every worker process (`bridge.metrics`): a directory of this
        # start's own, named before uvicorn starts them (they inherit the environment), and
        # removed when it stops.
        with tempfile.TemporaryDirectory(prefix="bridge-metrics-") as path:
            os.environ[MULTIPROC_DIR_ENV] = path
            try:
                _run(host, port, workers, limit_concurrency, access_log)
            finally:
                os.environ.pop(MULTIPROC_DIR_ENV, None)
    else:
        _run(host, port, workers, limit_concurrency, access_log)
    return 0


def _run(
    host: str, port: int, workers: int, limit_concurrency: int | None, access_log: bool
) -> None:
    # Past `limit_concurrency` requests in flight the server answers 503 at once: the provider
    # retries later, instead of every request slowing down until all of them time out.
    uvicorn.run(
        "bridge.api.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        http=GuardedHttpToolsProtocol,
        limit_concurrency=limit_concurrency,
        # uvicorn's access lines are plain text beside the JSON log, and a webhook already
        # logs what it stored or why it refused (`bridge.api.webhook`): off unless asked for.
        # When on, query values are redacted (`bridge.logs`): the handshake carries a token.
        access_log=access_log,
    )
