"""A small inbox page under /inbox/, for trying the stack in a browser: a member signs in, reads
their workspace's conversations live, sees the bot's typing and replies, switches the bot and
answers the customer, all through supabase-js against the stand-ins as the CRM frontend would.

The files are served as they are (no build step). supabase-js's browser bundle comes from npm
(`npm ci` in this directory, which `make install` runs); without it the page answers 503 and says
so. The page learns the anon key from `config.json`; the URL is the page's own origin.
"""

from __future__ import annotations

from pathlib import Path

import anyio
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from devstack.auth import decode, project_keys
from devstack.state import DevstackState

_HERE = Path(__file__).resolve().parent
_PAGE = _HERE / "page"
VENDOR_BUNDLE = (
    _HERE / "node_modules" / "@supabase" / "supabase-js" / "dist" / "umd" / "supabase.js"
)
# The page's own files, by the name they are served under (nothing else is).
_FILES = {
    "app.js": "text/javascript",
    "inbox.css": "text/css",
}
_NOT_INSTALLED = """<!doctype html>
<meta charset="utf-8"><title>Inbox: not installed</title>
<body style="font-family: system-ui, sans-serif; max-width: 40rem; margin: 4rem auto">
<h1>The inbox page is not installed</h1>
<p>Its copy of supabase-js is missing. Run <code>make install</code> (it runs
<code>npm ci</code> in <code>devstack/inbox</code>), then reload.</p>
</body>
"""


def anon_key(secret: str) -> str:
    """The project's anon key (the one `supabase start` prints for this JWT secret)."""
    return next(key for key in project_keys(secret) if decode(key, secret).role == "anon")


def routes(state: DevstackState, vendor_bundle: Path = VENDOR_BUNDLE) -> list[BaseRoute]:
    """The page's routes; `vendor_bundle` is where supabase-js's browser bundle is looked for."""
    key = anon_key(state.config.jwt_secret)
    bundle = anyio.Path(vendor_bundle)
    # Pages a developer reloads while editing them: never cached.
    no_store = {"cache-control": "no-store"}

    async def index(request: Request) -> Response:
        if not await bundle.is_file():
            return HTMLResponse(_NOT_INSTALLED, status_code=503, headers=no_store)
        return FileResponse(_PAGE / "index.html", media_type="text/html", headers=no_store)

    async def to_index(request: Request) -> Response:
        return RedirectResponse("/inbox/", status_code=308)

    async def config(request: Request) -> Response:
        return JSONResponse(
            {"url": str(request.base_url).rstrip("/"), "anonKey": key}, headers=no_store
        )

    async def vendor(request: Request) -> Response:
        if not await bundle.is_file():
            return Response("run `make install`\n", status_code=503, media_type="text/plain")
        return FileResponse(vendor_bundle, media_type="text/javascript")

    async def page_file(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in _FILES:
            return Response("Not Found", status_code=404, media_type="text/plain")
        return FileResponse(_PAGE / name, media_type=_FILES[name], headers=no_store)

    return [
        Route("/inbox", to_index),
        Route("/inbox/", index),
        Route("/inbox/config.json", config),
        Route("/inbox/vendor/supabase.js", vendor),
        Route("/inbox/{name}", page_file),
    ]
