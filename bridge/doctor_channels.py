"""`bridge doctor`'s checks of each WhatsApp channel: its credential, whether the worker may send
where it points, and an authenticated GET at its provider (Meta: the phone number's fields;
360dialog: the number's messaging health) that says whether the credential still works.

Which credential a channel sends with and where it may send are the worker's rules
(`jobs.turn.channel_for`, `jobs.whatsapp_api.SendPolicy`). The kernel may not import the worker,
so the caller (`bridge.cli`) passes them in as a `RuleFactory`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from bridge.doctor_database import ChannelRow
from bridge.doctor_report import Check, ok, problem, tail
from bridge.settings import Settings

_CHANNEL_READS = 10  # provider GETs in flight at once


@dataclass(frozen=True)
class Endpoint:
    """Where the worker sends for a channel: its API root (Meta: the phone number's node;
    360dialog: the base URL), the credential header, and the credential ("" when none)."""

    root: str
    headers: dict[str, str]
    credential: str


class EndpointRefused(Exception):
    """The worker would refuse to send on this channel; the message says why."""


EndpointRule = Callable[[ChannelRow], Endpoint]
# Builds the rule from the settings; ValueError names a setting that is not a plain base URL.
RuleFactory = Callable[[Settings], EndpointRule]


async def check_channels(
    settings: Settings,
    factory: RuleFactory,
    channels: list[ChannelRow] | None,
    seconds: float,
) -> list[Check]:
    if channels is None:
        return [
            Check("channels", "skipped", "skipped until the database is reachable and migrated")
        ]
    if not channels:
        return [
            Check(
                "channels",
                "warning",
                "public.whatsapp_channels is empty: nothing is answered",
                "add the workspace's WhatsApp numbers",
            )
        ]
    try:
        rule = factory(settings)
    except ValueError as exc:
        return [
            problem("sending", str(exc), "a plain http(s) base URL: no user, query or fragment")
        ]
    gate = asyncio.Semaphore(_CHANNEL_READS)
    async with httpx.AsyncClient(timeout=seconds, follow_redirects=False) as client:

        async def one(channel: ChannelRow) -> Check:
            async with gate:
                return await _channel(client, rule, channel, seconds)

        return list(await asyncio.gather(*(one(c) for c in channels)))


def _fix(provider: str) -> str:
    if provider == "360dialog":
        return "store its 360dialog API key in private.whatsapp_channel_credentials.api_key"
    return (
        "store its token in private.whatsapp_channel_credentials.access_token (or set "
        "WHATSAPP_ACCESS_TOKEN); a System User's token does not expire"
    )


async def _channel(
    client: httpx.AsyncClient, rule: EndpointRule, channel: ChannelRow, seconds: float
) -> Check:
    name = f"channel {channel.phone_number_id} ({channel.provider})"
    try:
        endpoint = rule(channel)
    except EndpointRefused as exc:
        return problem(
            name,
            f"the worker would refuse to send: {exc}",
            "set its api_base_url to an allowed endpoint (null: the configured default), or "
            "allow that endpoint in WHATSAPP_API_ALLOWED_BASE_URLS",
        )
    if not endpoint.credential:
        what = "an API key" if channel.provider == "360dialog" else "a token (nor a default)"
        return problem(
            name, f"has no credentials ({what}): nothing can be sent", _fix(channel.provider)
        )
    host = urlsplit(endpoint.root).netloc
    try:
        answer = await _read(client, endpoint, channel.provider)
    except httpx.TimeoutException:
        return problem(name, f"{host} did not answer within {seconds:g} s", "retry; check network")
    except httpx.HTTPError as exc:
        return problem(
            name,
            f"cannot reach {host} ({type(exc).__name__})",
            "check its api_base_url (or WHATSAPP_API_BASE_URL / WHATSAPP_360DIALOG_BASE_URL)",
        )
    return _judged(name, channel.provider, tail(endpoint.credential), answer)


async def _read(client: httpx.AsyncClient, endpoint: Endpoint, provider: str) -> httpx.Response:
    if provider == "360dialog":  # 360dialog's documented key check: the number's health
        return await client.get(f"{endpoint.root}/health_status", headers=endpoint.headers)
    return await client.get(
        endpoint.root,
        params={"fields": "display_phone_number,verified_name"},
        headers=endpoint.headers,
    )


def _judged(name: str, provider: str, shown: str, answer: httpx.Response) -> Check:
    body = _json(answer)
    raw_error = body.get("error")
    error: dict[str, Any] = raw_error if isinstance(raw_error, dict) else {}
    code, status = error.get("code"), answer.status_code
    if status == 401 or code == 190:
        return problem(
            name,
            f"the provider refuses its credential ({shown}): expired, revoked or wrong "
            f"(HTTP {status}{f', #{code}' if code else ''})",
            _fix(provider),
        )
    if status != 200:
        text = str(error.get("message") or "")[:120]
        return problem(
            name,
            f"the provider answers HTTP {status} {text}".rstrip(),
            "check its phone_number_id, and that its token may use this number",
        )
    if provider == "360dialog":
        health = body.get("health_status")
        state = health.get("can_send_message") if isinstance(health, dict) else None
        if state == "BLOCKED":
            return problem(
                name, "360dialog says it cannot send (BLOCKED)", "see its health in 360dialog's hub"
            )
        return ok(name, f"360dialog accepts its API key ({shown}); messaging {state or 'unknown'}")
    number = str(body.get("display_phone_number") or "?")[:30]
    verified = str(body.get("verified_name") or "?")[:60]
    return ok(name, f"{number} ({verified}) answers with its token ({shown})")


def _json(answer: httpx.Response) -> dict[str, Any]:
    try:
        body = answer.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
