"""`bridge doctor`: every setting and connection the two processes use, checked, with what is
wrong and how to fix it in plain words (docs/operations.md, "Checking a deployment").

It checks the Supabase API and its key, the worker's DATABASE_URL (session mode, writable,
migrated, the realtime publication), Redis, the webhook secrets, and each WhatsApp channel:
credentials, endpoint and an authenticated GET at its provider. It writes nothing but one Redis
key that expires in seconds, and prints no secret beyond its last four characters.

The checks live in `doctor_database` (DATABASE_URL) and `doctor_channels` (WhatsApp), here the
rest (Supabase, Redis, webhook secrets) and the report; `doctor_report` is a check's shape.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

import httpx
from pydantic import SecretStr, ValidationError
from redis import exceptions as redis_errors
from redis.asyncio import Redis

from bridge.doctor_channels import RuleFactory, check_channels
from bridge.doctor_database import check_database
from bridge.doctor_report import Check, masked, ok, problem, tail
from bridge.settings import Settings

_KEY_FIX = (
    "set SUPABASE_SERVICE_ROLE_KEY to the project's secret key (sb_secret_…) or its legacy "
    "service_role key (Project Settings > API Keys)"
)


def _usable(secret: SecretStr | None) -> str | None:
    value = secret.get_secret_value() if secret is not None else None
    return value if value and value.strip() else None


def load_settings() -> tuple[Settings | None, list[Check]]:
    """The settings, or the problems that keep them from loading."""
    try:
        return Settings(), []
    except ValidationError as exc:
        return None, [
            problem(
                "settings",
                f"{'.'.join(str(p) for p in error['loc'])}: {error['msg']}",
                "correct it in the environment or .env (every key is in .env.example)",
            )
            for error in exc.errors()
        ]


async def run(
    settings: Settings, rule: RuleFactory, *, local: bool = False, seconds: float = 5.0
) -> list[Check]:
    supabase, (database, channels), redis = await asyncio.gather(
        _supabase(settings, seconds), check_database(settings, seconds), _redis(settings, seconds)
    )
    providers = None if channels is None else {c.provider for c in channels}
    return [
        *supabase,
        *database,
        redis,
        *_webhook(settings, providers, local=local),
        *await check_channels(settings, rule, channels, seconds),
    ]


def render(checks: Sequence[Check]) -> str:
    problems = sum(c.status == "problem" for c in checks)
    warnings = sum(c.status == "warning" for c in checks)
    summary = (
        f"{problems} problem(s), {warnings} warning(s)" if problems or warnings else "all is well"
    )
    return "".join(c.line() + "\n" for c in checks) + summary + "\n"


def render_json(checks: Sequence[Check]) -> str:
    document = {
        "ok": not any(c.status == "problem" for c in checks),
        "checks": [asdict(c) for c in checks],
    }
    return json.dumps(document, ensure_ascii=False, indent=2) + "\n"


# --- Supabase ------------------------------------------------------------------------------


def _jwt_claims(token: str) -> dict[str, Any] | None:
    """A JWT's claims, unverified; None when `token` is not a JWT."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, binascii.Error):
        return None
    return claims if isinstance(claims, dict) else None


def key_check(key: str) -> Check:
    """What kind of key SUPABASE_SERVICE_ROLE_KEY holds, from the key alone."""
    name, shown = "supabase key", tail(key)
    if key.startswith("sb_secret_"):
        return ok(name, f"a secret key (sb_secret_, {shown}), the service role's successor")
    if key.startswith("sb_publishable_"):
        return problem(
            name,
            f"SUPABASE_SERVICE_ROLE_KEY is a publishable key ({shown}): it acts as anon and "
            "cannot call the bridge's functions",
            _KEY_FIX,
        )
    claims = _jwt_claims(key)
    if claims is None:
        return problem(name, f"SUPABASE_SERVICE_ROLE_KEY ({shown}) is not a Supabase key", _KEY_FIX)
    role = str(claims.get("role"))[:40]
    if role == "anon":
        return problem(
            name,
            f"SUPABASE_SERVICE_ROLE_KEY is the anon key ({shown}): it cannot call the bridge's "
            "functions nor read channel credentials",
            _KEY_FIX,
        )
    if role != "service_role":
        who = "a user's session token" if "sub" in claims else "a token"
        return problem(
            name, f"SUPABASE_SERVICE_ROLE_KEY is {who} with role {role!r} ({shown})", _KEY_FIX
        )
    exp = claims.get("exp")
    if isinstance(exp, int | float) and exp < time.time():
        when = datetime.fromtimestamp(exp, UTC).date().isoformat()
        return problem(name, f"the service_role key ({shown}) expired on {when}", _KEY_FIX)
    return ok(name, f"a service_role JWT ({shown})")


async def _supabase(settings: Settings, seconds: float) -> list[Check]:
    key = settings.SUPABASE_SERVICE_ROLE_KEY.get_secret_value()
    return [await _supabase_answers(settings.SUPABASE_URL, key, seconds), key_check(key)]


async def _supabase_answers(url: str, key: str, seconds: float) -> Check:
    """Calls public.bridge_ready as the API's /readyz does: reachable, key accepted, schema."""
    name, shown = "supabase", masked(url)
    fix_url = "set SUPABASE_URL to the project's API URL (https://<project-ref>.supabase.co)"
    headers = {"apikey": key, "Authorization": f"Bearer {key}"}
    try:
        async with httpx.AsyncClient(timeout=seconds) as client:
            answer = await client.post(
                f"{url.rstrip('/')}/rest/v1/rpc/bridge_ready", json={}, headers=headers
            )
    except httpx.TimeoutException:
        return problem(name, f"{shown} did not answer within {seconds:g} s", fix_url)
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        return problem(name, f"cannot reach {shown} ({type(exc).__name__}: {exc})", fix_url)
    status, code = answer.status_code, _field(answer, "code")
    if status == 200:
        return ok(name, f"{shown} answers and accepts the key (public.bridge_ready)")
    if code == "42501":  # PostgREST: permission denied (401 for anon, 403 for others)
        return problem(
            name, f"{shown}: the key's role may not call public.bridge_ready ({status})", _KEY_FIX
        )
    if status == 401:
        return problem(
            name,
            f"{shown} refuses the key (401 {code or ''}): not this project's, expired or revoked",
            _KEY_FIX,
        )
    if status == 403:
        return problem(name, f"{shown}: the key may not call public.bridge_ready (403)", _KEY_FIX)
    if code == "PGRST202":
        return problem(
            name,
            f"{shown} answers, but public.bridge_ready is missing: the schema is not migrated "
            "or PostgREST's schema cache is stale",
            "apply the migrations (supabase db push), or run NOTIFY pgrst, 'reload schema'",
        )
    return problem(name, f"{shown} answers HTTP {status} to /rest/v1/rpc/bridge_ready", fix_url)


def _field(answer: httpx.Response, key: str) -> str | None:
    try:
        body = answer.json()
    except ValueError:
        return None
    value = body.get(key) if isinstance(body, dict) else None
    return str(value)[:40] if value is not None else None


# --- Redis ---------------------------------------------------------------------------------


async def _redis(settings: Settings, seconds: float) -> Check:
    name, shown = "redis", masked(settings.REDIS_URL)
    fix = "check REDIS_URL (redis:// or rediss:// for TLS), that Redis runs and accepts writes"
    key = f"bridge:doctor:{uuid.uuid4().hex}"
    try:
        client = Redis.from_url(
            settings.REDIS_URL, socket_connect_timeout=seconds, socket_timeout=seconds
        )
    except ValueError as exc:
        return problem(name, f"REDIS_URL is not a Redis URL ({exc})", fix)
    try:
        await client.set(key, "1", px=10_000)
        if await client.get(key) != b"1":
            return problem(name, f"{shown} did not keep a value it was given", fix)
        await client.delete(key)
    except redis_errors.ReadOnlyError:
        return problem(name, f"{shown} is a read-only replica", "point REDIS_URL at the primary")
    except (redis_errors.RedisError, OSError) as exc:
        return problem(name, f"{shown} fails ({type(exc).__name__}: {exc})"[:400], fix)
    finally:
        await client.aclose()
    return ok(name, f"{shown} answers and is writable")


# --- webhook secrets -----------------------------------------------------------------------


def _webhook(settings: Settings, providers: set[str] | None, *, local: bool) -> list[Check]:
    meta = _usable(settings.WHATSAPP_APP_SECRET)
    d360 = _usable(settings.WHATSAPP_360DIALOG_WEBHOOK_SECRET)
    return [
        _secrets(settings, meta, d360, providers, local),
        _verify_token(settings, meta, providers),
    ]


def _secrets(
    settings: Settings,
    meta: str | None,
    d360: str | None,
    providers: set[str] | None,
    local: bool,
) -> Check:
    name = "webhook secrets"
    fix = (
        "set WHATSAPP_APP_SECRET to the Meta app's secret (App settings > Basic), and "
        "WHATSAPP_360DIALOG_WEBHOOK_SECRET for 360dialog channels"
    )
    if meta is None and d360 is None:
        if not settings.BRIDGE_INSECURE_DEV:
            return problem(
                name,
                "WHATSAPP_APP_SECRET and WHATSAPP_360DIALOG_WEBHOOK_SECRET are unset (a blank value"
                " counts as unset): bridge serve refuses to start",
                fix,
            )
        if local:
            return ok(name, "none; BRIDGE_INSECURE_DEV accepts unsigned webhooks (--local)")
        return Check(
            name,
            "warning",
            "none; BRIDGE_INSECURE_DEV=true accepts unsigned webhooks from anyone: local only",
            fix + ", and BRIDGE_INSECURE_DEV=false",
        )
    for provider, secret, key in (
        ("meta", meta, "WHATSAPP_APP_SECRET"),
        ("360dialog", d360, "WHATSAPP_360DIALOG_WEBHOOK_SECRET"),
    ):
        if secret is None and providers and provider in providers:
            message = f"{key} is unset: webhooks of the {provider} channels are refused (401)"
            return problem(name, message, fix)
    shown = ", ".join(
        f"{key} ({tail(secret)})"
        for key, secret in (
            ("WHATSAPP_APP_SECRET", meta),
            ("WHATSAPP_360DIALOG_WEBHOOK_SECRET", d360),
        )
        if secret is not None
    )
    if settings.BRIDGE_INSECURE_DEV and not local:
        return Check(
            name,
            "warning",
            f"{shown} set, and BRIDGE_INSECURE_DEV=true (ignored while a secret is set)",
            "set BRIDGE_INSECURE_DEV=false",
        )
    return ok(name, f"{shown} set")


def _verify_token(settings: Settings, meta: str | None, providers: set[str] | None) -> Check:
    name, token = "verify token", _usable(settings.WHATSAPP_VERIFY_TOKEN)
    fix = "set WHATSAPP_VERIFY_TOKEN to the token entered in Meta's webhook settings"
    if token is not None:
        return ok(name, f"WHATSAPP_VERIFY_TOKEN set ({tail(token)})")
    if meta is None and providers is not None and "meta" not in providers:
        return ok(name, "WHATSAPP_VERIFY_TOKEN unset; not needed without Meta channels")
    message = "WHATSAPP_VERIFY_TOKEN is unset: Meta's webhook verification (GET) is refused (403)"
    if meta is None and providers is None:  # the channels are unknown: maybe none is Meta's
        return Check(name, "warning", message + " (needed for Meta channels)", fix)
    return problem(
        name,
        message,
        fix,
    )
