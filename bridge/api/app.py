"""The FastAPI application: the WhatsApp webhook, health probes and metrics."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse

from bridge import gc_tuning, logs
from bridge.api import webhook
from bridge.api.runtime import Runtime
from bridge.settings import Settings


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
            await runtime.supabase.rpc("bridge_ready", {}).execute()
        except Exception as exc:
            return JSONResponse({"status": "unavailable", "detail": str(exc)[:500]}, 503)
        return JSONResponse({"status": "ok"})

    @app.get("/metrics")
    async def metrics(request: Request) -> PlainTextResponse:
        runtime: Runtime = request.app.state.runtime
        return PlainTextResponse(runtime.metrics.render(), media_type="text/plain; version=0.0.4")

    return app
