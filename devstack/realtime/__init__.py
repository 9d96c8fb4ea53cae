"""Supabase Realtime: the Phoenix WebSocket, the REST broadcast endpoints and Postgres Changes.

Routes follow the `supabase start` gateway: `/realtime/v1/websocket` (and Realtime's own
`/socket/websocket`), `/realtime/v1/api/broadcast` and
`/realtime/v1/api/broadcast/{topic}/events/{event}`. Broadcasts from `realtime.send()` in the
database arrive through LISTEN/NOTIFY (see `database.py`); so do row changes of the
`supabase_realtime` publication's tables, captured by triggers (see `capture.py`, `pg_changes.py`).
"""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.websockets import WebSocket

from devstack.realtime import rest, socket
from devstack.realtime.connection import CLOSE_GOING_AWAY
from devstack.realtime.database import DatabaseBroadcasts
from devstack.realtime.pg_changes import PostgresChanges
from devstack.realtime.runtime import runtime_of
from devstack.state import DevstackState


def routes(state: DevstackState) -> list[BaseRoute]:
    runtime = runtime_of(state)

    async def websocket_endpoint(websocket: WebSocket) -> None:
        await socket.serve(websocket, runtime)

    async def batch_endpoint(request: Request) -> Response:
        return await rest.broadcast_batch(request, runtime)

    async def single_endpoint(request: Request) -> Response:
        return await rest.broadcast_single(request, runtime)

    return [
        WebSocketRoute("/realtime/v1/websocket", websocket_endpoint),
        WebSocketRoute("/socket/websocket", websocket_endpoint),
        Route("/realtime/v1/api/broadcast", batch_endpoint, methods=["POST"]),
        Route("/realtime/v1/api/broadcast/{tail:path}", single_endpoint, methods=["POST"]),
    ]


async def start(state: DevstackState) -> None:
    runtime = runtime_of(state)
    runtime.pool = state.pool
    runtime.database = DatabaseBroadcasts(state.config.database_url, runtime.hub)
    await runtime.database.start()
    runtime.pg_subscriptions.pool = state.pool
    runtime.pg_changes = PostgresChanges(state.config.database_url, runtime.pg_subscriptions)
    await runtime.pg_changes.start()


async def stop(state: DevstackState) -> None:
    runtime = runtime_of(state)
    if runtime.pg_changes is not None:
        await runtime.pg_changes.stop()
        runtime.pg_changes = None
    if runtime.database is not None:
        await runtime.database.stop()
        runtime.database = None
    for connection in list(runtime.connections):
        connection.close(CLOSE_GOING_AWAY, "server shutting down")
    # Let the sockets send their close frames before the server goes.
    for _ in range(20):
        if not runtime.connections:
            break
        await asyncio.sleep(0.05)
