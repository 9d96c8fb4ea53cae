"""The webhook API in-process (real Supabase client → devstack → Postgres; real Redis)."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr

from bridge.app import create_app
from bridge.settings import Settings
from bridge.signature import sign

APP_SECRET = "test-app-secret"
D360_SECRET = "test-360dialog-secret"
VERIFY_TOKEN = "test-verify-token"


@dataclass(frozen=True)
class Channel:
    workspace_id: uuid.UUID
    channel_id: uuid.UUID
    phone_number_id: str
    provider: str


@pytest.fixture
async def make_channel(db: asyncpg.Pool) -> Callable[..., Awaitable[Channel]]:
    """A fresh workspace with one WhatsApp channel (random phone_number_id)."""

    async def make(provider: str = "meta") -> Channel:
        owner = uuid.uuid4()
        ws = uuid.uuid4()
        channel = uuid.uuid4()
        pnid = str(10**15 + uuid.uuid4().int % 10**14)
        async with db.acquire() as conn, conn.transaction():
            await conn.execute(
                "insert into auth.users (id, email) values ($1, $2)", owner, f"{owner}@test.local"
            )
            await conn.execute(
                "insert into public.workspaces (id, name, slug, owner_id) values ($1, $2, $3, $4)",
                ws,
                "Test",
                f"test-{ws}",
                owner,
            )
            await conn.execute(
                "insert into public.whatsapp_channels (id, workspace_id, phone_number_id, provider)"
                " values ($1, $2, $3, $4)",
                channel,
                ws,
                pnid,
                provider,
            )
        return Channel(ws, channel, pnid, provider)

    return make


def settings_for(devstack_url: str, redis_url: str, queue_name: str, **overrides: Any) -> Settings:
    from tests.fixtures.devstack import SERVICE_ROLE_KEY

    values: dict[str, Any] = {
        "SUPABASE_URL": devstack_url,
        "SUPABASE_SERVICE_ROLE_KEY": SecretStr(SERVICE_ROLE_KEY),
        "REDIS_URL": redis_url,
        "ARQ_QUEUE_NAME": queue_name,
        "WHATSAPP_APP_SECRET": SecretStr(APP_SECRET),
        "WHATSAPP_360DIALOG_WEBHOOK_SECRET": SecretStr(D360_SECRET),
        "WHATSAPP_VERIFY_TOKEN": SecretStr(VERIFY_TOKEN),
        **overrides,
    }
    return Settings(_env_file=None, **values)


class WebhookClient:
    """Posts signed webhook bodies to an app running in-process, lifespan included."""

    def __init__(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        self.app = app
        self.http = client

    async def post(
        self,
        payload: Any,
        *,
        secret: str | None = APP_SECRET,
        header: str = "X-Hub-Signature-256",
        raw: bytes | None = None,
    ) -> httpx.Response:
        body = raw if raw is not None else json.dumps(payload).encode()
        headers = {"content-type": "application/json"}
        if secret is not None:
            headers[header] = sign(body, secret)
        return await self.http.post("/webhooks/whatsapp", content=body, headers=headers)


async def open_webhook_client(
    settings: Settings,
) -> tuple[WebhookClient, Callable[[], Awaitable[None]]]:
    app = create_app(settings)
    lifespan = app.router.lifespan_context(app)
    await lifespan.__aenter__()
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bridge")

    async def close() -> None:
        await http.aclose()
        await lifespan.__aexit__(None, None, None)

    return WebhookClient(app, http), close


@pytest.fixture
async def webhook(
    devstack_url: str, redis_url: str, queue_name: str
) -> AsyncIterator[WebhookClient]:
    client, close = await open_webhook_client(settings_for(devstack_url, redis_url, queue_name))
    try:
        yield client
    finally:
        await close()
