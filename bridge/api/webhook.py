"""`GET/POST /webhooks/whatsapp`: Meta's verification handshake and the signed intake.

The POST answers 200 only after the batch is committed, 503 when it could not be stored for a
transient reason (the provider retries for days), and rings the worker's doorbell once committed,
without waiting for it (`bridge.api.doorbell`): Redis trouble never changes the 200, the worker's
sweeper finds what was not enqueued. A store still running when the answer is due (`BRIDGE_DB_TIMEOUT_SECONDS`) gets a 503
but is not abandoned: if it commits, its doorbell rings then, and the provider's retry is a
duplicate. A batch the database refuses for a data reason is answered 200 too: a redelivery
cannot fix it, so its raw event is kept as failed (counted in
`bridge_webhook_failed_batches_total`, logged as `bridge.api.webhook.batch_failed`) for
`bridge replay` once the cause is fixed (docs/operations.md).
"""

from __future__ import annotations

import asyncio
import hmac
import itertools
import json
import logging
import random
import re
import time
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import SecretStr, ValidationError
from starlette.endpoints import HTTPEndpoint
from starlette.routing import Route

from bridge.api import signature
from bridge.api.intake import IntakeResult, Provider, StoreUnavailable, store_webhook
from bridge.api.payloads import NormalisedBatch, Webhook, loads_storable
from bridge.api.runtime import MAX_CONNECTIONS, Runtime
from bridge.api.text_scrub import may_hold_unstorable, scrub
from bridge.logs import correlation_id
from bridge.queue import TurnJob

log = logging.getLogger(__name__)

PATH = "/webhooks/whatsapp"

# Deepest JSON nesting accepted. Real webhooks nest about a dozen levels; a body nested thousands
# deep would exhaust recursion in the parser, the scrub, the validation or the store.
MAX_JSON_DEPTH = 64
# A caller's X-Request-Id is kept when it is 1-128 visible ASCII characters, else replaced.
_REQUEST_ID = re.compile(r"[!-~]{1,128}")
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def add_routes(app: FastAPI) -> None:
    app.router.routes.append(Route(PATH, WhatsAppWebhook))


class WhatsAppWebhook(HTTPEndpoint):
    """A plain Starlette endpoint: both methods take the raw request and build their response,
    so FastAPI's per-request machinery (dependency solving, included-router dispatch) would only
    add cost to every POST (docs/performance.md). Other methods get a 405 naming these two."""

    async def get(self, request: Request) -> Response:
        return await verify_subscription(request)

    async def post(self, request: Request) -> Response:
        started = time.perf_counter()
        status = 500  # an exception escaped: Starlette answers 500
        try:
            response = await receive(request)
            status = response.status_code
            return response
        finally:
            _runtime(request).metrics.observe(
                "bridge_webhook_duration_seconds",
                time.perf_counter() - started,
                status=str(status),
            )


def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def _reject(runtime: Runtime, status: int, reason: str, detail: str) -> JSONResponse:
    runtime.metrics.inc("bridge_webhook_rejected_total", reason=reason)
    log.warning("bridge.api.webhook.rejected", extra={"reason": reason, "detail": detail})
    return JSONResponse({"error": reason, "detail": detail}, status_code=status)


def _usable(secret: SecretStr | None) -> str | None:
    """The secret's value, or None when it is unset or blank: a blank key is no key."""
    if secret is None:
        return None
    value = secret.get_secret_value()
    return value if value.strip() else None


async def verify_subscription(request: Request) -> Response:
    runtime = _runtime(request)
    token = _usable(runtime.settings.WHATSAPP_VERIFY_TOKEN)
    params = request.query_params
    given = params.get("hub.verify_token", "")
    if (
        token is not None
        and params.get("hub.mode") == "subscribe"
        and hmac.compare_digest(given.encode(), token.encode())
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
    meta_secret = _usable(settings.WHATSAPP_APP_SECRET)
    d360_secret = _usable(settings.WHATSAPP_360DIALOG_WEBHOOK_SECRET)
    if meta_sig is not None and meta_secret is not None:
        if signature.is_valid(body, meta_sig, meta_secret):
            return "meta", "ok"
        return None, "bad_signature"
    if d360_sig is not None and d360_secret is not None:
        if signature.is_valid(body, d360_sig, d360_secret):
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


def _too_deep(body: bytes, limit: int) -> bool:
    """Whether the JSON text nests arrays and objects deeper than `limit` (brackets inside
    strings do not count)."""
    # Fewer opening brackets than the limit cannot nest deeper: most bodies stop here.
    if body.count(b"[") + body.count(b"{") <= limit:
        return False
    brackets = _JSON_STRING.sub(b"", body).translate(None, _NOT_BRACKETS)
    steps = (1 if b in b"[{" else -1 for b in brackets)
    return max(itertools.accumulate(steps), default=0) > limit


def _new_correlation_id() -> str:
    # A log-correlation id needs uniqueness, not secrecy: 128 bits from the process's PRNG, as
    # unique as uuid4's and without its read of the OS's random source on every request.
    return f"{random.getrandbits(128):032x}"


def _correlation_id(request: Request) -> str:
    given = request.headers.get("x-request-id")
    # Only a short printable id is carried into every log line and job of the request.
    if given and _REQUEST_ID.fullmatch(given):
        return given
    return _new_correlation_id()


async def receive(request: Request) -> Response:
    runtime = _runtime(request)
    settings = runtime.settings
    cid = _correlation_id(request)
    correlation_id.set(cid)
    try:
        async with asyncio.timeout(settings.BRIDGE_BODY_TIMEOUT_SECONDS):
            body = await _read_capped(request, settings.BRIDGE_MAX_BODY_BYTES)
    except TimeoutError:
        return _reject(
            runtime,
            408,
            "body_timeout",
            f"the body did not arrive within {settings.BRIDGE_BODY_TIMEOUT_SECONDS} s",
        )
    if body is None:
        return _reject(
            runtime,
            413,
            "body_too_large",
            f"limit is {settings.BRIDGE_MAX_BODY_BYTES} bytes",
        )
    provider, reason = _authenticate(runtime, request, body)
    if provider is None:
        return _reject(runtime, 401, reason, "X-Hub-Signature-256 / X-360Dialog-Signature")
    try:
        payload: Any = loads_storable(body)
        # Checked on text that parsed: on valid JSON the scan of its strings is linear.
        too_deep = _too_deep(body, MAX_JSON_DEPTH)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return _reject(runtime, 400, "invalid_json", str(exc))
    except RecursionError:
        too_deep = True
    if too_deep:
        return _reject(
            runtime, 400, "json_too_deep", f"arrays and objects nest deeper than {MAX_JSON_DEPTH}"
        )
    if may_hold_unstorable(body):
        payload = scrub(payload)
    if not isinstance(payload, dict):
        return _reject(runtime, 400, "wrong_object", "expected a JSON object")
    # A signed object is the provider's: one the normaliser cannot read is kept as a failed
    # event (200, for `bridge replay` after a fix), never refused into retries and then lost.
    if payload.get("object") != "whatsapp_business_account":
        refused = "expected an object with object == 'whatsapp_business_account'"
        return await _store(runtime, provider, payload, NormalisedBatch(), cid, refused=refused)
    try:
        batch = Webhook.model_validate(payload).normalise()
    except (ValidationError, ValueError) as exc:
        refused = f"invalid_payload: {str(exc)[:1800]}"
        return await _store(runtime, provider, payload, NormalisedBatch(), cid, refused=refused)
    return await _store(runtime, provider, payload, batch, cid)


async def _store(
    runtime: Runtime,
    provider: Provider,
    payload: dict[str, Any],
    batch: NormalisedBatch,
    cid: str,
    *,
    refused: str | None = None,
) -> Response:
    timeout = runtime.settings.BRIDGE_DB_TIMEOUT_SECONDS
    store = asyncio.create_task(
        store_webhook(
            runtime.supabase, provider=provider, payload=payload, batch=batch, refused=refused
        )
    )
    # Waiting on the task rather than under a timeout: a timeout would cancel the request while
    # Postgres may still commit it, and nobody would ring for what it stored.
    try:
        await asyncio.wait((store,), timeout=timeout)
    except asyncio.CancelledError:  # the server gave up on this request, not on the store
        _follow_late_store(runtime, store, provider, cid)
        raise
    if not store.done():
        _follow_late_store(runtime, store, provider, cid)
        return _store_failed(runtime, f"no answer within {timeout} s")
    try:
        result = store.result()
    except StoreUnavailable as exc:
        return _store_failed(runtime, str(exc))
    _stored(runtime, provider, result, cid)
    if result.failed:
        return JSONResponse({"received": True, "event_id": result.event_id, "failed": True})
    return JSONResponse({"received": True, "event_id": result.event_id})


def _store_failed(runtime: Runtime, detail: str) -> JSONResponse:
    runtime.metrics.inc("bridge_webhook_store_failed_total")
    log.error("bridge.api.webhook.store_failed", extra={"detail": detail})
    return JSONResponse({"error": "store_unavailable"}, status_code=503)


def _follow_late_store(
    runtime: Runtime, store: asyncio.Task[IntakeResult], provider: Provider, cid: str
) -> None:
    """Ring the doorbell for a store answered 503 once it commits after all."""
    if len(runtime.late_stores) >= MAX_CONNECTIONS:
        store.cancel()
        return
    runtime.late_stores.add(store)

    def finished(task: asyncio.Task[IntakeResult]) -> None:
        runtime.late_stores.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.warning("bridge.api.webhook.late_store_failed", extra={"detail": str(exc)})
            return
        result = task.result()
        runtime.metrics.inc("bridge_webhook_stored_late_total")
        log.warning(
            "bridge.api.webhook.stored_late",
            extra={"event_id": result.event_id, "messages": len(result.new_inbound)},
        )
        _stored(runtime, provider, result, cid, count_accepted=False)

    store.add_done_callback(finished)


def _stored(
    runtime: Runtime,
    provider: Provider,
    result: IntakeResult,
    cid: str,
    *,
    count_accepted: bool = True,
) -> None:
    metrics = runtime.metrics
    if count_accepted:
        metrics.inc("bridge_webhook_accepted_total", provider=provider)
    if result.failed:
        metrics.inc("bridge_webhook_failed_batches_total")
        log.error(
            "bridge.api.webhook.batch_failed",
            extra={
                "event_id": result.event_id,
                "sqlstate": result.sqlstate,
                "detail": result.error,
            },
        )
        return
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
