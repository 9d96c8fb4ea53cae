"""The keep-alive HTTP clients a process shares for its outgoing requests.

supabase-py (the API's RPC) takes an httpx client: `pooled_client` gives it httpx's API over
aiohttp's connection pool and C HTTP parser. Requests the bridge makes itself (the worker's typing
broadcasts and WhatsApp sends) use `pooled_session`, plain aiohttp, which also skips httpx's
request and response models: about half the CPU again per request.

httpcore, httpx's own transport, re-examines every pooled connection (a readability syscall each)
whenever a request starts or ends, so its cost grows with the requests in flight: `bench devstack`
measures supabase-py's client CPU per RPC at 1.1 to 1.5 ms with httpcore and 0.5 to 0.7 ms with the
aiohttp transport. Callers keep using httpx (timeouts, errors, responses).
"""

from __future__ import annotations

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport

# How long an idle pooled connection is kept: under the 5 s after which uvicorn (the stand-in) and
# many proxies close idle connections, so a request is not written into one being closed.
KEEPALIVE_SECONDS = 4.0


def pooled_client(*, timeout: float, max_connections: int) -> httpx.AsyncClient:
    """An httpx client whose connections are pooled by aiohttp, at most `max_connections`.

    The aiohttp session is created on the first request, inside the running event loop, and
    closed by `aclose()`."""
    transport = AiohttpTransport(
        limits=httpx.Limits(max_connections=max_connections, keepalive_expiry=KEEPALIVE_SECONDS)
    )
    return httpx.AsyncClient(timeout=timeout, transport=transport)


def pooled_session(*, timeout: float, max_connections: int) -> aiohttp.ClientSession:
    """An aiohttp session with at most `max_connections` keep-alive connections and a default
    total timeout per request. Create it inside the running event loop; close it with
    `close()`."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=max_connections, keepalive_timeout=KEEPALIVE_SECONDS),
        timeout=aiohttp.ClientTimeout(total=timeout),
        # The bridge's requests carry their own credentials; no cookies between them.
        cookie_jar=aiohttp.DummyCookieJar(),
    )
