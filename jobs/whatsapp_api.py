"""Sending through WhatsApp: Meta's Graph API (`Authorization: Bearer`) or 360dialog's hosting of
it (`D360-API-KEY`, no phone-number id in the path). Errors are typed by what the sender may do:

    SendError
    ├── Throttled     definitely not sent; back off and try the same message again
    ├── WindowClosed  131047: outside the 24 h customer-service window; do not send
    ├── Rejected      definitely not sent (bad request, auth, undeliverable); do not retry
    │   └── Refused   never attempted: the channel names an endpoint the operator did not allow,
    │                 or would carry the default token anywhere but WHATSAPP_API_BASE_URL
    └── Ambiguous     timeout, connection drop after the request, 5xx, an answer without a
                      well-formed message id: it may have been sent, so it is never re-sent blindly

Provider endpoints and credentials are the operator's: a channel's `api_base_url` is written by
tenants, so it is honoured only when it lies under an allowed base (`SendPolicy`), compared
after parsing. What a provider answers is stored only as a parsed Graph error (code and message,
truncated), never as a raw body, since the tenant reads it back.
"""

from __future__ import annotations

import hmac
import json
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp

from bridge.settings import Settings

THROTTLE_CODES = {4, 80007, 130429, 131056}
WINDOW_CLOSED = 131047

# Answers are small JSON documents; a larger body is read only this far.
MAX_ANSWER_BYTES = 64 * 1024
# What of a provider's error message is kept for the outbox row.
MAX_ERROR_CHARS = 200
# A message id as Graph issues them ("wamid." and base64-like text); anything else is not trusted.
_WAMID = re.compile(r"wamid\.[A-Za-z0-9_=+/.:-]{1,250}")
_PATH_SEGMENT = re.compile(r"[A-Za-z0-9._~-]+")
_HOST = re.compile(r"[a-z0-9.-]+|[0-9a-f:.]+")  # a name, IPv4, or IPv6 without its brackets
_DEFAULT_PORTS = {"http": 80, "https": 443}


class SendError(Exception):
    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class Throttled(SendError):
    pass


class WindowClosed(SendError):
    pass


class Rejected(SendError):
    pass


class Refused(Rejected):
    pass


class Ambiguous(SendError):
    pass


@dataclass(frozen=True)
class Channel:
    provider: str  # 'meta' | '360dialog'
    phone_number_id: str
    base_url: str
    credential: str


@dataclass(frozen=True)
class BaseUrl:
    """An http(s) endpoint reduced to what decides where a request goes."""

    scheme: str
    host: str
    port: int
    path: str  # "" or "/a/b": no trailing slash, no dot segments

    def contains(self, other: BaseUrl) -> bool:
        """`other` is this endpoint or lies under its path."""
        return (self.scheme, self.host, self.port) == (other.scheme, other.host, other.port) and (
            other.path == self.path or other.path.startswith(self.path + "/")
        )


def parse_base_url(url: str) -> BaseUrl:
    """The endpoint of `url`, or ValueError when it is not a plain http(s) base URL: no user
    info, query or fragment (a `#` would cut the path the sender appends), no dot or encoded
    path segments, no control characters or spaces."""
    if not url or any(c.isspace() or unicodedata.category(c)[0] == "C" for c in url):
        raise ValueError("not a URL without spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"not a URL: {exc}") from exc
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise ValueError("not an http or https URL")
    if "@" in parts.netloc:
        raise ValueError("carries user information")
    if "#" in url or parts.query or "?" in url:
        raise ValueError("carries a query or a fragment")
    host = (parts.hostname or "").lower()
    if not _HOST.fullmatch(host):
        raise ValueError("has no host name or address of letters, digits and .-: only")
    path = parts.path.rstrip("/")
    segments = path.split("/")[1:] if path else []
    if any(s in (".", "..") or not _PATH_SEGMENT.fullmatch(s) for s in segments):
        raise ValueError("has a path segment other than letters, digits and ._~-")
    return BaseUrl(scheme, host, port or _DEFAULT_PORTS[scheme], path)


def parse_base_urls(text: str) -> tuple[BaseUrl, ...]:
    """A comma- or space-separated list of base URLs; ValueError names the bad one."""
    urls: list[BaseUrl] = []
    for item in re.split(r"[,\s]+", text.strip()):
        if not item:
            continue
        try:
            urls.append(parse_base_url(item))
        except ValueError as exc:
            raise ValueError(f"{item!r} {exc}") from exc
    return tuple(urls)


@dataclass(frozen=True)
class SendPolicy:
    """Where sends may go, and where the default token may go (WHATSAPP_API_BASE_URL only)."""

    default_base: BaseUrl
    allowed: tuple[BaseUrl, ...]
    default_token: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> SendPolicy:
        """ValueError, naming the setting, when a configured URL is not a plain base URL."""
        try:
            meta = parse_base_url(settings.WHATSAPP_API_BASE_URL)
        except ValueError as exc:
            raise ValueError(f"WHATSAPP_API_BASE_URL {exc}") from exc
        try:
            d360 = parse_base_url(settings.WHATSAPP_360DIALOG_BASE_URL)
        except ValueError as exc:
            raise ValueError(f"WHATSAPP_360DIALOG_BASE_URL {exc}") from exc
        allowed: Iterable[BaseUrl] = (meta, d360)
        if settings.WHATSAPP_API_ALLOWED_BASE_URLS is not None:
            try:
                allowed = parse_base_urls(settings.WHATSAPP_API_ALLOWED_BASE_URLS)
            except ValueError as exc:
                raise ValueError(f"WHATSAPP_API_ALLOWED_BASE_URLS: {exc}") from exc
        token = settings.WHATSAPP_ACCESS_TOKEN
        return cls(meta, tuple(allowed), token.get_secret_value() if token else None)

    def request(self, channel: Channel) -> tuple[str, dict[str, str]]:
        """The URL and credential header of a send on `channel`, or Refused."""
        try:
            base = parse_base_url(channel.base_url)
        except ValueError as exc:
            raise Refused(
                f"refused: the channel's api_base_url is not an allowed provider endpoint ({exc})"
            ) from None
        if not any(allowed.contains(base) for allowed in self.allowed):
            raise Refused(
                f"refused: {base.scheme}://{base.host}:{base.port} with path {base.path or '/'}"
                " is not an allowed provider endpoint (WHATSAPP_API_ALLOWED_BASE_URLS)"
            )
        if self._is_default_token(channel.credential) and (
            channel.provider != "meta" or base != self.default_base
        ):
            raise Refused(
                "refused: the default access token goes only to WHATSAPP_API_BASE_URL;"
                " give this channel its own credentials"
            )
        if not channel.credential.isprintable():  # it goes into a header
            raise Refused("refused: the channel's credential has control characters")
        root = channel.base_url.rstrip("/")
        if channel.provider == "360dialog":
            return f"{root}/messages", {"D360-API-KEY": channel.credential}
        if not channel.phone_number_id.isascii() or not channel.phone_number_id.isdigit():
            raise Refused("refused: the channel's phone_number_id is not digits")
        return (
            f"{root}/{quote(channel.phone_number_id, safe='')}/messages",
            {"Authorization": f"Bearer {channel.credential}"},
        )

    def _is_default_token(self, credential: str) -> bool:
        if not self.default_token:
            return False
        return hmac.compare_digest(credential.encode(), self.default_token.encode())


def graph_error(status: int, body: bytes) -> tuple[str, int | None]:
    """A provider's error answer as "HTTP <status>: (#<code>) <message>", from the parsed
    Graph error only (the raw body is never repeated), and its code."""
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    error = data.get("error") if isinstance(data, dict) else None
    if not isinstance(error, dict):
        return f"HTTP {status} (no Graph error in the answer)", None
    raw_code = error.get("code")
    code = raw_code if isinstance(raw_code, int) and not isinstance(raw_code, bool) else None
    if isinstance(raw_code, str) and raw_code.isascii() and raw_code.isdigit():
        code = int(raw_code)
    if code is not None and not 0 <= code < 10**9:
        code = None
    title = error.get("error_user_title") or error.get("title") or error.get("message")
    text = _printable(title)[:MAX_ERROR_CHARS] if isinstance(title, str) else ""
    label = f"(#{code})" if code is not None else "(no code)"
    return f"HTTP {status}: {label} {text}".rstrip(), code


def _printable(text: str) -> str:
    return "".join(c if unicodedata.category(c)[0] != "C" else " " for c in text).strip()


def message_id(body: bytes) -> str | None:
    """`messages[0].id` of a send's answer when it is a well-formed wamid."""
    try:
        data = json.loads(body)
    except ValueError:
        return None
    messages = data.get("messages") if isinstance(data, dict) else None
    if not (isinstance(messages, list) and messages and isinstance(messages[0], dict)):
        return None
    wamid = messages[0].get("id")
    return wamid if isinstance(wamid, str) and _WAMID.fullmatch(wamid) else None


class WhatsAppClient:
    """Sends on one pooled session. `policy` defaults to the process's settings."""

    def __init__(self, http: aiohttp.ClientSession, policy: SendPolicy) -> None:
        self._http = http
        self._policy = policy

    async def _post(self, channel: Channel, body: dict[str, Any]) -> bytes:
        url, headers = self._policy.request(channel)
        try:
            # A redirect would take the credential to a URL nobody allowed.
            async with self._http.post(
                url, json=body, headers=headers, allow_redirects=False
            ) as response:
                status = response.status
                answer = await response.content.read(MAX_ANSWER_BYTES)
        except aiohttp.ClientConnectorError as exc:
            # Nothing reached the server: safe to call a rejection, not ambiguous.
            raise Rejected(f"cannot connect to the provider: {type(exc).__name__}") from exc
        except TimeoutError as exc:  # aiohttp's own timeouts are TimeoutErrors too
            raise Ambiguous(f"timeout: {type(exc).__name__}") from exc
        except aiohttp.ClientError as exc:  # dropped after the request was written, bad answer
            raise Ambiguous(f"transport error: {type(exc).__name__}") from exc
        if 200 <= status < 300:
            return answer
        message, code = graph_error(status, answer)
        if status >= 500:  # it may have been sent whatever the body says
            raise Ambiguous(message)
        if code in THROTTLE_CODES or status == 429:
            raise Throttled(message, code)
        if code == WINDOW_CLOSED:
            raise WindowClosed(message, code)
        raise Rejected(message, code)

    async def send_text(self, channel: Channel, to: str, body: str, *, group: bool = False) -> str:
        """Send a text (to a group when `group`: `to` is then its group id); returns the new
        message's wamid."""
        answer = await self._post(
            channel,
            {
                "messaging_product": "whatsapp",
                "recipient_type": "group" if group else "individual",
                "to": to,
                "type": "text",
                "text": {"body": body, "preview_url": False},
            },
        )
        wamid = message_id(answer)
        if wamid is None:
            raise Ambiguous("accepted without a well-formed message id")
        return wamid

    async def send_template(
        self, channel: Channel, to: str, template: dict[str, Any], *, group: bool = False
    ) -> str:
        """Send a template message (`template`: the Cloud API's object, name, language and
        components); returns the new message's wamid. The only kind WhatsApp delivers outside
        the 24-hour customer service window."""
        answer = await self._post(
            channel,
            {
                "messaging_product": "whatsapp",
                "recipient_type": "group" if group else "individual",
                "to": to,
                "type": "template",
                "template": template,
            },
        )
        wamid = message_id(answer)
        if wamid is None:
            raise Ambiguous("accepted without a well-formed message id")
        return wamid

    async def send_typing(self, channel: Channel, wamid: str) -> None:
        """Mark `wamid` read and show "typing…" to the customer (dismissed on reply or 25 s)."""
        await self._post(
            channel,
            {
                "messaging_product": "whatsapp",
                "status": "read",
                "message_id": wamid,
                "typing_indicator": {"type": "text"},
            },
        )
