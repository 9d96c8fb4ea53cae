"""The stand-in server: PostgREST (RPC and tables) under /rest/v1, Auth under /auth/v1, Realtime
under /realtime/v1 and the WhatsApp Cloud API under /whatsapp, on one port like the
`supabase start` gateway."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from devstack import gotrue, inbox, postgrest, realtime, whatsapp
from devstack.auth import ApiKeyGate
from devstack.config import DevstackConfig
from devstack.state import DevstackState


async def _keep_session(conn: asyncpg.Connection) -> None:
    """What a released connection gets beyond asyncpg's rollback of an open transaction: nothing.

    PostgREST does not reset a pooled connection between requests either (every request setting
    is transaction-local); asyncpg's default (advisory unlock, CLOSE ALL, UNLISTEN, RESET ALL)
    would cost one more round trip per call."""


def create_app(config: DevstackConfig) -> Starlette:
    state = DevstackState(config=config)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # Idle connections are closed soon: tests and `make dev` share one Postgres whose
        # max_connections (100 by default) several processes draw from.
        state.pool = await asyncpg.create_pool(
            config.database_url,
            min_size=1,
            max_size=config.pool_max_size,
            max_inactive_connection_lifetime=10.0,
            reset=_keep_session,
        )
        await realtime.start(state)
        # As the bridge's processes do (`bridge.gc_tuning`): what start-up made is left out of
        # every later collection, and a request's objects are freed by reference counting before
        # a young collection would walk them.
        gc.collect()
        gc.freeze()
        gc.set_threshold(10_000, *gc.get_threshold()[1:])
        try:
            yield
        finally:
            await realtime.stop(state)
            await whatsapp.stop(state)
            await state.pool.close()

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    routes = [
        Route("/health", health),
        *postgrest.routes(state),
        *gotrue.routes(state),
        *realtime.routes(state),
        *whatsapp.routes(state),
        *inbox.routes(state),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        # Supabase's gateway refuses a request whose apikey is not one of the project's keys.
        middleware=[Middleware(ApiKeyGate, secret=config.jwt_secret)],
    )
    app.state.devstack = state
    return app
