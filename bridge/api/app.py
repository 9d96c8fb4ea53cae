"""The FastAPI application: the WhatsApp webhook, health probes and metrics."""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from bridge import gc_tuning, logs
from bridge.api import webhook
from bridge.api.runtime import Runtime
from bridge.metrics import CONTENT_TYPE
from bridge.settings import Settings

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    settings.check_webhook_secrets()
    logs.configure(settings.BRIDGE_LOG_LEVEL)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.runtime = await Runtime.start(settings)
        gc_tuning.settle_after_startup()
        try:
            yield
        finally:
            await app.state.runtime.stop()

    app = FastAPI(title="wa-agent-bridge", lifespan=lifespan)
    webhook.add_routes(app)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz(request: Request) -> JSONResponse:
        runtime: Runtime = request.app.state.runtime
        try:
            async with asyncio.timeout(settings.BRIDGE_DB_TIMEOUT_SECONDS):
                await runtime.supabase.rpc("bridge_ready", {}).execute()
        except Exception as exc:
            # Upstream error text is for the operator's log, not for whoever asks.
            log.warning(
                "bridge.api.not_ready", extra={"detail": f"{type(exc).__name__}: {exc}"[:500]}
            )
            return JSONResponse({"status": "unavailable"}, 503)
        return JSONResponse({"status": "ok"})

    metrics_token = settings.BRIDGE_METRICS_TOKEN
    expected_authorization = (
        f"Bearer {metrics_token.get_secret_value()}".encode() if metrics_token else None
    )

    @app.get("/metrics")
    async def metrics(request: Request) -> Response:
        runtime: Runtime = request.app.state.runtime
        if expected_authorization is not None:
            given = request.headers.get("authorization", "").encode("latin-1")
            if not hmac.compare_digest(given, expected_authorization):
                return JSONResponse(
                    {"error": "unauthorized"},
                    status_code=401,
                    headers={"WWW-Authenticate": "Bearer"},
                )
        # Every uvicorn worker's counts, whichever worker answers (`bridge.metrics`).
        return Response(runtime.metrics.render(), media_type=CONTENT_TYPE)

    return app
