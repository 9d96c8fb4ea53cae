"""The inbox page's routes on the stand-in: the page, its files, the anon key it signs in with and
supabase-js's browser bundle, all without an apikey (a browser's plain GETs carry none); and a
503 that says what to run while the bundle is not installed."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette

from devstack import inbox
from devstack.config import DevstackConfig
from devstack.state import DevstackState
from tests.fixtures.devstack import ANON_KEY

needs_bundle = pytest.mark.skipif(
    not inbox.VENDOR_BUNDLE.is_file(),
    reason="devstack/inbox/node_modules is missing: run `npm ci` there (make install does)",
)


@needs_bundle
async def test_the_page_is_served_as_html_without_an_apikey(devstack_url: str) -> None:
    async with httpx.AsyncClient(base_url=devstack_url) as http:
        page = await http.get("/inbox/")
        bare = await http.get("/inbox")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert '<script src="vendor/supabase.js"></script>' in page.text
    assert '<script type="module" src="app.js"></script>' in page.text
    assert 'data-testid="sign-in-form"' in page.text
    assert (bare.status_code, bare.headers["location"]) == (308, "/inbox/")


async def test_the_config_gives_the_url_and_the_projects_anon_key(devstack_url: str) -> None:
    async with httpx.AsyncClient(base_url=devstack_url) as http:
        config = await http.get("/inbox/config.json")
    assert config.status_code == 200
    assert config.json() == {"url": devstack_url, "anonKey": ANON_KEY}


@needs_bundle
async def test_supabase_js_and_the_pages_files_are_served(devstack_url: str) -> None:
    # A wrong apikey changes nothing: the gateway's check covers the APIs, not the page.
    async with httpx.AsyncClient(base_url=devstack_url, headers={"apikey": "garbage"}) as http:
        bundle = await http.get("/inbox/vendor/supabase.js")
        script = await http.get("/inbox/app.js")
        style = await http.get("/inbox/inbox.css")
        others = [await http.get(f"/inbox/{name}") for name in ("__init__.py", "index.html")]
    assert bundle.status_code == 200
    assert bundle.headers["content-type"].startswith("text/javascript")
    assert "createClient" in bundle.text
    assert script.status_code == 200
    assert script.headers["content-type"].startswith("text/javascript")
    assert "signInWithPassword" in script.text
    assert (style.status_code, style.headers["content-type"][:8]) == (200, "text/css")
    # Only the page's own files, by name; index.html is the page itself, at /inbox/.
    assert [r.status_code for r in others] == [404, 404]


async def test_without_the_bundle_the_page_answers_503_saying_what_to_run(
    tmp_path: Path,
) -> None:
    state = DevstackState(config=DevstackConfig(database_url="postgresql://unused"))
    app = Starlette(routes=inbox.routes(state, vendor_bundle=tmp_path / "supabase.js"))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://stand-in") as http:
        page = await http.get("/inbox/")
        bundle = await http.get("/inbox/vendor/supabase.js")
    assert page.status_code == 503
    assert "make install" in page.text
    assert bundle.status_code == 503
