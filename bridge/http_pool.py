"""The keep-alive HTTP clients a process shares for its outgoing requests.

supabase-py (the API's RPC) takes an httpx client: `pooled_client` gives it httpx's API over
aiohttp's connection pool and C HTTP parser. Requests the bridge makes itself (the worker's typing
broadcasts and WhatsApp sends) use `pooled_session`, plain aiohttp.

httpcore, httpx's own transport, re-examines every pooled connection (a readability syscall each)
whenever a request starts or ends, so its cost grows with the requests in flight. And httpx's
client machinery (request model, auth and redirect flows, cookie extraction through urllib) adds
a cost of its own to every request. `bench devstack` measures supabase-py's client CPU per RPC
with each client; the figures are in docs/performance.md.
"""

from __future__ import annotations

from typing import Any

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport

# Distinct request URLs whose parsed form is kept: the API calls a handful of RPC endpoints.
_MAX_PARSED_URLS = 64

# How long an idle pooled connection is kept: under the 5 s after which uvicorn (the stand-in) and
# many proxies close idle connections, so a request is not written into one being closed.
KEEPALIVE_SECONDS = 4.0


class AiohttpClient(httpx.AsyncClient):
    """An httpx client whose requests go straight to one aiohttp session.

    `request()` with an absolute URL and a bytes body (what postgrest-py sends) skips httpx's
    client flow and returns an `httpx.Response` read in full; anything else (streams, auth
    objects, cookies, a relative URL...) takes httpx's full path over the same aiohttp session.
    Redirects are not followed, httpx's default. Responses come uncompressed
    (`Accept-Encoding: identity`): RPC answers are small, and their bytes stay as sent.
    """

    def __init__(self, *, timeout: float, max_connections: int) -> None:
        self._total_seconds = timeout
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None
        self._parsed_urls: dict[str, httpx.URL] = {}
        super().__init__(
            timeout=timeout,
            transport=AiohttpTransport(client=self._aiohttp),
            headers={"Accept-Encoding": "identity"},
        )

    def _aiohttp(self) -> aiohttp.ClientSession:
        # Created on the first request, inside the running event loop.
        if self._session is None:
            self._session = pooled_session(
                timeout=self._total_seconds, max_connections=self._max_connections
            )
        return self._session

    async def request(
        self,
        method: str,
        url: httpx.URL | str,
        *,
        content: Any = None,
        params: Any = None,
        headers: Any = None,
        auth: Any = httpx.USE_CLIENT_DEFAULT,
        **other: Any,
    ) -> httpx.Response:
        if not isinstance(url, str) or not self._short_path(url, content, auth, other):
            return await super().request(
                method, url, content=content, params=params, headers=headers, auth=auth, **other
            )
        if params:
            query = str(httpx.QueryParams(params))
            if query:
                url = f"{url}{'&' if '?' in url else '?'}{query}"
        merged = self.headers.copy()
        if headers:
            merged.update(headers)
        request = httpx.Request(method, self._parsed(url), headers=merged, content=content)
        try:
            async with self._aiohttp().request(
                method, url, data=content, headers=merged.multi_items(), allow_redirects=False
            ) as answer:
                body = await answer.read()
        except TimeoutError as exc:
            raise httpx.TimeoutException(
                f"no answer within {self._total_seconds} s", request=request
            ) from exc
        except aiohttp.ClientConnectorError as exc:
            raise httpx.ConnectError(str(exc), request=request) from exc
        except aiohttp.ServerDisconnectedError as exc:
            raise httpx.RemoteProtocolError(str(exc), request=request) from exc
        except aiohttp.ClientPayloadError as exc:
            raise httpx.ReadError(str(exc), request=request) from exc
        except aiohttp.ClientError as exc:
            raise httpx.NetworkError(f"{type(exc).__name__}: {exc}", request=request) from exc
        return httpx.Response(
            answer.status,
            headers=answer.raw_headers,
            content=body,
            request=request,
            extensions={"reason_phrase": (answer.reason or "").encode()},
        )

    def _parsed(self, url: str) -> httpx.URL:
        # httpx parses a URL string on every request, a visible share of the RPC's client CPU;
        # the response's request (postgrest-py reads its headers) can share one parsed URL.
        parsed = self._parsed_urls.get(url)
        if parsed is None:
            if len(self._parsed_urls) >= _MAX_PARSED_URLS:
                self._parsed_urls.clear()
            parsed = self._parsed_urls[url] = httpx.URL(url)
        return parsed

    def _short_path(self, url: str, content: Any, auth: Any, other: dict[str, Any]) -> bool:
        """What postgrest-py sends: an absolute URL, a bytes body, no auth, cookies or options."""
        return (
            not other
            and url.startswith(("http://", "https://"))
            and isinstance(content, bytes | None)
            and (auth is httpx.USE_CLIENT_DEFAULT or auth is None)
            and self.auth is None
            and not self.cookies
        )

    async def aclose(self) -> None:
        await super().aclose()  # closes the transport, and with it the session it was handed
        if self._session is not None and not self._session.closed:
            await self._session.close()


def pooled_client(*, timeout: float, max_connections: int) -> httpx.AsyncClient:
    """An httpx client whose connections are pooled by aiohttp, at most `max_connections`; the
    session is created on the first request and closed by `aclose()`."""
    return AiohttpClient(timeout=timeout, max_connections=max_connections)


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
