"""What the API process holds while it runs: settings, the Supabase client, the doorbell."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import httpx
from supabase import AsyncClient, AsyncClientOptions, acreate_client

from bridge.api.doorbell import Doorbell
from bridge.http_pool import pooled_client
from bridge.metrics import Metrics
from bridge.queue import Enqueuer
from bridge.settings import Settings

# Connections to Supabase per process, and how many late stores are followed at once: past that,
# with every connection busy, a late store has most likely not been sent, and it is cancelled
# (the worker's sweeper covers one that was).
MAX_CONNECTIONS = 100
# How long a stopping API waits for the late stores it follows.
LATE_STORE_GRACE_SECONDS = 2.0


@dataclass
class Runtime:
    settings: Settings
    supabase: AsyncClient
    doorbell: Doorbell
    http: httpx.AsyncClient
    metrics: Metrics
    # Stores that outlived the webhook's answer (`bridge.api.webhook`), followed to their end.
    late_stores: set[asyncio.Task[Any]] = field(default_factory=set)

    @classmethod
    async def start(cls, settings: Settings) -> Runtime:
        # Our own client carries the timeout (the client options' timeout is deprecated) and a
        # keep-alive pool shared by every request of this process. A request is not abandoned
        # when its answer is due (`BRIDGE_DB_TIMEOUT_SECONDS`, enforced by the caller): a store
        # may still commit, and its doorbell must ring then.
        http = pooled_client(
            timeout=settings.BRIDGE_DB_TIMEOUT_SECONDS + settings.BRIDGE_DB_LATE_COMMIT_SECONDS,
            max_connections=MAX_CONNECTIONS,
        )
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
        if self.late_stores:
            # A late store that commits now still rings before the doorbell closes.
            await asyncio.wait(self.late_stores, timeout=LATE_STORE_GRACE_SECONDS)
            for task in self.late_stores:
                task.cancel()
        await self.doorbell.close()
        await self.http.aclose()
        self.metrics.close()
