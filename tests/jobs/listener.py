"""An HTTP listener standing for a server a tenant controls (or an internal service): it records
every request that reaches it and answers what the test chose."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fixtures.devstack import free_port


@dataclass
class Listener:
    url: str
    requests: list[dict[str, Any]] = field(default_factory=list)
    status: int = 200
    body: bytes = b'{"ok": true}'


@asynccontextmanager
async def listening() -> AsyncIterator[Listener]:
    port = free_port()
    listener = Listener(f"http://127.0.0.1:{port}")

    async def record(request: web.Request) -> web.Response:
        listener.requests.append(
            {
                "path": request.path_qs,
                "headers": dict(request.headers),
                "body": await request.read(),
            }
        )
        return web.Response(
            status=listener.status, body=listener.body, content_type="application/json"
        )

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", record)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield listener
    finally:
        await runner.cleanup()
