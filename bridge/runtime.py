"""What the API process holds while it runs: settings, the Supabase client, the enqueuer."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import httpx
from supabase import AsyncClient, AsyncClientOptions, acreate_client

from bridge.metrics import Metrics
from bridge.queue import Enqueuer
from bridge.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    settings: Settings
    supabase: AsyncClient
    enqueuer: Enqueuer
    http: httpx.AsyncClient
    metrics: Metrics = field(default_factory=Metrics)

    @classmethod
    async def start(cls, settings: Settings) -> Runtime:
        # Our own httpx client carries the timeout (the client options' timeout is deprecated)
        # and a keep-alive pool shared by every request of this process.
        http = httpx.AsyncClient(
            timeout=settings.BRIDGE_DB_TIMEOUT_SECONDS,
            limits=httpx.Limits(max_connections=100, max_keepalive_connections=50),
        )
        supabase = await acreate_client(
            settings.SUPABASE_URL,
            settings.SUPABASE_SERVICE_ROLE_KEY.get_secret_value(),
            options=AsyncClientOptions(
                httpx_client=http, auto_refresh_token=False, persist_session=False
            ),
        )
        return cls(
            settings=settings,
            supabase=supabase,
            enqueuer=Enqueuer(settings.REDIS_URL, settings.ARQ_QUEUE_NAME),
            http=http,
        )

    async def ring_doorbell(self, new_inbound: list[dict[str, Any]], cid: str) -> None:
        """Enqueue after the 200: failures are logged and counted, the sweeper recovers."""
        try:
            queued = await self.enqueuer.enqueue_inbound(new_inbound, cid)
        except Exception as exc:
            self.metrics.inc("bridge_enqueue_failed_total", len(new_inbound))
            log.warning(
                "bridge.enqueue.failed",
                extra={
                    "correlation_id": cid,
                    "detail": f"{type(exc).__name__}: {exc}",
                    "messages": len(new_inbound),
                },
            )
            return
        self.metrics.inc("bridge_jobs_enqueued_total", queued)

    async def stop(self) -> None:
        await self.enqueuer.close()
        await self.http.aclose()
