"""The FastAPI application: health probes now, the WhatsApp webhook in bridge/webhook."""

from __future__ import annotations

from fastapi import FastAPI

from bridge.settings import Settings


def create_app(settings: Settings | None = None) -> FastAPI:
    app = FastAPI(title="wa-agent-bridge")
    app.state.settings = settings or Settings()

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app
