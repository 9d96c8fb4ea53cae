"""The intake service: a parsed webhook body becomes one RPC that stores it atomically.

No FastAPI here: the router verifies and parses, this stores and reports what is new. A batch the
database refuses for a data reason comes back `failed` (its raw event kept for `bridge replay`);
only a transient failure raises `StoreUnavailable`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from postgrest.exceptions import APIError
from supabase import AsyncClient

from bridge.api.payloads import NormalisedBatch

Provider = Literal["meta", "360dialog"]


class StoreUnavailable(Exception):
    """The database did not take the batch: the provider must retry (answer 503)."""


@dataclass
class IntakeResult:
    event_id: str
    new_inbound: list[dict[str, Any]] = field(default_factory=list)
    stored: int = 0
    duplicates: int = 0
    unroutable: list[str] = field(default_factory=list)
    statuses_applied: int = 0
    statuses_orphaned: int = 0
    # The database refused the batch for a data reason: nothing but the raw event was stored.
    failed: bool = False
    sqlstate: str | None = None
    error: str | None = None


def intake_result(data: Any) -> IntakeResult:
    """The result object of `public.ingest_whatsapp_webhook`."""
    if not isinstance(data, dict):
        raise StoreUnavailable(f"unexpected answer from ingest_whatsapp_webhook: {data!r}")
    return IntakeResult(
        event_id=str(data["event_id"]),
        new_inbound=list(data.get("new_inbound") or []),
        stored=int(data.get("stored") or 0),
        duplicates=int(data.get("duplicates") or 0),
        unroutable=list(data.get("unroutable") or []),
        statuses_applied=int(data.get("statuses_applied") or 0),
        statuses_orphaned=int(data.get("statuses_orphaned") or 0),
        failed=bool(data.get("failed")),
        sqlstate=data.get("sqlstate"),
        error=data.get("error"),
    )


async def store_webhook(
    supabase: AsyncClient,
    *,
    provider: Provider,
    payload: dict[str, Any],
    batch: NormalisedBatch,
    refused: str | None = None,
) -> IntakeResult:
    """`refused`: why the normaliser could not read the body; it is then kept as a failed
    event (a data reason, answered 200) for `bridge replay`, never lost to the provider's
    retries."""
    try:
        response = await supabase.rpc(
            "ingest_whatsapp_webhook",
            {
                "p_provider": provider,
                "p_payload": payload,
                "p_messages": batch.messages,
                "p_statuses": batch.statuses,
                "p_refused": refused,
            },
        ).execute()
    except APIError as exc:
        raise StoreUnavailable(f"{exc.code}: {exc.message}") from exc
    except Exception as exc:  # transport errors, timeouts: nothing was stored
        raise StoreUnavailable(f"{type(exc).__name__}: {exc}") from exc
    return intake_result(response.data)
