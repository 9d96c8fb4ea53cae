"""`GET/POST /webhooks/whatsapp`: Meta's verification handshake and the signed intake.

The POST answers 200 only after the batch is committed, 503 when it could not be stored (the
provider retries for days), and rings the worker's doorbell once committed, without waiting for
it (`bridge.api.doorbell`): Redis trouble never changes the 200, the worker's sweeper finds what was
not enqueued.
"""

from __future__ import annotations

import hmac
import json
import logging
import random
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import ValidationError
from starlette.endpoints import HTTPEndpoint
from starlette.routing import Route

from bridge.api import signature
from bridge.api.intake import Provider, StoreUnavailable, store_webhook
from bridge.api.payloads import Webhook
from bridge.api.runtime import Runtime
from bridge.api.text_scrub import may_hold_unstorable, scrub
from bridge.logs import correlation_id
from bridge.queue import TurnJob

log = logging.getLogger(__name__)

PATH = "/webhooks/whatsapp"


def add_routes(app: FastAPI) -> None:
    app.router.routes.append(Route(PATH, WhatsAppWebhook))


class WhatsAppWebhook(HTTPEndpoint):
    """A plain Starlette endpoint: both methods take the raw request and build their response,
    so FastAPI's per-request machinery (dependency solving, included-router dispatch) would only
    add cost to every POST (docs/performance.md). Other methods get a 405 naming these two."""

    async def get(self, request: Request) -> Response:
        return await verify_subscription(request)

    async def post(self, request: Request) -> Response:
        return await receive(request)


def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def _reject(runtime: Runtime, status: int, reason: str, detail: str) -> JSONResponse:
    runtime.metrics.inc("bridge_webhook_rejected_total", reason=reason)
    log.warning("bridge.api.webhook.rejected", extra={"reason": reason, "detail": detail})
    return JSONResponse({"error": reason, "detail": detail}, status_code=status)


async def verify_subscription(request: Request) -> Response:
    runtime = _runtime(request)
    token = runtime.settings.WHATSAPP_VERIFY_TOKEN
    params = request.query_params
    given = params.get("hub.verify_token", "")
    if (
        token is not None
        and params.get("hub.mode") == "subscribe"
        and hmac.compare_digest(given.encode(), token.get_secret_value().encode())
        and "hub.challenge" in params
    ):
        return PlainTextResponse(params["hub.challenge"])
    runtime.metrics.inc("bridge_webhook_rejected_total", reason="verification_failed")
    return JSONResponse({"error": "verification_failed"}, status_code=403)


def _authenticate(runtime: Runtime, request: Request, body: bytes) -> tuple[Provider | None, str]:
    """The provider whose signature matches, or None and the reason for a 401."""
    settings = runtime.settings
    meta_sig = request.headers.get(signature.META_HEADER)
    d360_sig = request.headers.get(signature.D360_HEADER)
    meta_secret = settings.WHATSAPP_APP_SECRET
    d360_secret = settings.WHATSAPP_360DIALOG_WEBHOOK_SECRET
    if meta_sig is not None and meta_secret is not None:
        if signature.is_valid(body, meta_sig, meta_secret.get_secret_value()):
            return "meta", "ok"
        return None, "bad_signature"
    if d360_sig is not None and d360_secret is not None:
        if signature.is_valid(body, d360_sig, d360_secret.get_secret_value()):
            return "360dialog", "ok"
        return None, "bad_signature"
    if settings.BRIDGE_INSECURE_DEV and meta_secret is None and d360_secret is None:
        d360 = request.query_params.get("provider") == "360dialog"
        return ("360dialog" if d360 else "meta"), "insecure_dev"
    return None, "missing_signature"


async def _read_capped(request: Request, limit: int) -> bytes | None:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _new_correlation_id() -> str:
    # A log-correlation id needs uniqueness, not secrecy: 128 bits from the process's PRNG, as
    # unique as uuid4's and without its read of the OS's random source on every request.
    return f"{random.getrandbits(128):032x}"


async def receive(request: Request) -> Response:
    runtime = _runtime(request)
    cid = request.headers.get("x-request-id") or _new_correlation_id()
    correlation_id.set(cid)
    body = await _read_capped(request, runtime.settings.BRIDGE_MAX_BODY_BYTES)
    if body is None:
        return _reject(
            runtime,
            413,
            "body_too_large",
            f"limit is {runtime.settings.BRIDGE_MAX_BODY_BYTES} bytes",
        )
    provider, reason = _authenticate(runtime, request, body)
    if provider is None:
        return _reject(runtime, 401, reason, "X-Hub-Signature-256 / X-360Dialog-Signature")
    try:
        payload: Any = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return _reject(runtime, 400, "invalid_json", str(exc))
    if may_hold_unstorable(body):
        payload = scrub(payload)
    if not isinstance(payload, dict) or payload.get("object") != "whatsapp_business_account":
        return _reject(
            runtime,
            400,
            "wrong_object",
            "expected an object with object == 'whatsapp_business_account'",
        )
    try:
        batch = Webhook.model_validate(payload).normalise()
    except (ValidationError, ValueError) as exc:
        return _reject(runtime, 400, "invalid_payload", str(exc)[:2000])

    try:
        result = await store_webhook(
            runtime.supabase, provider=provider, payload=payload, batch=batch
        )
    except StoreUnavailable as exc:
        runtime.metrics.inc("bridge_webhook_store_failed_total")
        log.error("bridge.api.webhook.store_failed", extra={"detail": str(exc)})
        return JSONResponse({"error": "store_unavailable"}, status_code=503)

    metrics = runtime.metrics
    metrics.inc("bridge_webhook_accepted_total", provider=provider)
    metrics.inc("bridge_messages_stored_total", result.stored)
    metrics.inc("bridge_messages_duplicate_total", result.duplicates)
    metrics.inc("bridge_statuses_applied_total", result.statuses_applied)
    metrics.inc("bridge_statuses_orphaned_total", result.statuses_orphaned)
    if result.unroutable:
        metrics.inc("bridge_webhook_unroutable_total", len(result.unroutable))
        log.warning("bridge.api.webhook.unroutable", extra={"phone_number_ids": result.unroutable})
    for msg in result.new_inbound:
        log.info(
            "bridge.message.stored",
            extra={"wamid": msg["wamid"], "conversation_id": msg["conversation_id"]},
        )
    runtime.doorbell.ring(
        TurnJob.for_message(str(msg["conversation_id"]), str(msg["message_id"]), cid)
        for msg in result.new_inbound
    )
    return JSONResponse({"received": True, "event_id": result.event_id})
