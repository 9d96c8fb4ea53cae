"""What the API process holds while it runs: settings, the Supabase client, the doorbell."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
from supabase import AsyncClient, AsyncClientOptions, acreate_client

from bridge.api.doorbell import Doorbell
from bridge.http_pool import pooled_client
from bridge.metrics import Metrics
from bridge.queue import Enqueuer
from bridge.settings import Settings


@dataclass
class Runtime:
    settings: Settings
    supabase: AsyncClient
    doorbell: Doorbell
    http: httpx.AsyncClient
    metrics: Metrics

    @classmethod
    async def start(cls, settings: Settings) -> Runtime:
        # Our own client carries the timeout (the client options' timeout is deprecated) and a
        # keep-alive pool shared by every request of this process.
        http = pooled_client(timeout=settings.BRIDGE_DB_TIMEOUT_SECONDS, max_connections=100)
        supabase = await acreate_client(
            settings.SUPABASE_URL,
            settings.SUPABASE_SERVICE_ROLE_KEY.get_secret_value(),
            options=AsyncClientOptions(
                httpx_client=http, auto_refresh_token=False, persist_session=False
            ),
        )
        metrics = Metrics()
        doorbell = Doorbell(Enqueuer(settings.REDIS_URL, settings.ARQ_QUEUE_NAME), metrics)
        doorbell.start()
        return cls(
            settings=settings,
            supabase=supabase,
            doorbell=doorbell,
            http=http,
            metrics=metrics,
        )

    async def stop(self) -> None:
        await self.doorbell.close()
        await self.http.aclose()
