"""The stand-in's inbox page (/inbox/) in a real browser, headless Chromium driven by
playwright-core (tests/js/inbox_browser.mjs): a member of a workspace signs in with a password and
works their conversations while the database, the worker's typing broadcaster and the real arq
worker act on the other side.

`INBOX_SCREENSHOT=docs/inbox.png` saves what the page looks like while the bot is typing."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from jobs.typing_broadcast import TypingBroadcaster
from tests.devstack.inbox_data import (
    DAVE,
    DEMO_PASSWORD,
    DEMO_STORE,
    OTHER_SHOP,
    bot_replied,
    customer_writes,
    give_password,
    make_conversation,
    open_conversation,
)
from tests.fixtures.devstack import SERVICE_ROLE_KEY
from tests.fixtures.postgres import RUN_ID
from tests.fixtures.worker import (
    TurnStack,
    WhatsAppRecorder,
    Worker,
    Workspace,
    eventually,
    make_workspace,
)
from tests.js.node import JS_DIR, finish, needs_node, node_runner, read_json

CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium")

pytestmark = [
    *needs_node,
    pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed: make browser"),
    pytest.mark.skipif(
        not (JS_DIR / "node_modules" / "playwright-core").is_dir(),
        reason="tests/js/node_modules has no playwright-core: run `make install`",
    ),
]

ROOT = Path(__file__).resolve().parents[2]


class Browser:
    """One inbox_browser.mjs: each command acts in a named browser session ("main" is the
    member's) and answers with what the page shows."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdin is not None
        self._proc = proc
        self._stdin = proc.stdin

    async def do(self, step: str, **args: Any) -> dict[str, Any]:
        self._stdin.write(f"{json.dumps({'do': step, **args})}\n".encode())
        await self._stdin.drain()
        answer: dict[str, Any] = await read_json(self._proc, within=20)
        assert answer["step"] == step, answer
        assert "failed" not in answer, answer
        return answer


@dataclass(frozen=True)
class Member:
    workspace: Workspace
    email: str


@pytest.fixture(scope="module")
async def member(db: asyncpg.Pool) -> Member:
    """An agent of a workspace set up as the worker tests set theirs up, who has a password."""
    workspace = await make_workspace(db)
    return Member(workspace, await give_password(db, workspace.agents[0], "Laura Agent"))


@pytest.fixture(scope="module")
async def browser(devstack_url: str, member: Member) -> AsyncIterator[Browser]:
    """The inbox page, signed in as `member`."""
    async with node_runner() as run:
        proc = await run("inbox_browser.mjs", f"{devstack_url}/inbox/")
        page = Browser(proc)
        signed_in = await page.do("sign_in", email=member.email, password=DEMO_PASSWORD)
        assert "error" not in signed_in, signed_in
        yield page
        await finish(proc)


async def conversation(db: asyncpg.Pool, member: Member, name: str) -> tuple[uuid.UUID, str]:
    ws = member.workspace
    return await open_conversation(db, ws.id, ws.phone_number_id, name)


def shown(messages: list[dict[str, Any]]) -> list[tuple[str, str, bool]]:
    return [(m["direction"], m["body"], m["bot_badge"]) for m in messages]


async def test_the_bots_replies_carry_the_badge_and_the_customers_do_not(
    db: asyncpg.Pool, member: Member, browser: Browser
) -> None:
    conv, _ = await conversation(db, member, "Lucía Gómez")
    await customer_writes(db, conv, "Hola, ¿tienen envíos a Medellín?")
    reply = await bot_replied(db, conv, "¡Hola! Sí, enviamos a todo el país.", status="sent")
    opened = await browser.do("open", id=str(conv))
    assert shown(opened["messages"]) == [
        ("inbound", "Hola, ¿tienen envíos a Medellín?", False),
        ("outbound", "¡Hola! Sí, enviamos a todo el país.", True),
    ]
    assert [m["human_badge"] for m in opened["messages"]] == [False, False]
    assert opened["messages"][1]["status"] == "sent"
    # WhatsApp's statuses show as they arrive.
    await db.execute("update public.messages set status = 'read' where id = $1", reply)
    await browser.do("wait_message", body="¡Hola! Sí, enviamos a todo el país.", status="read")


async def test_a_new_customer_message_shows_without_a_reload(
    db: asyncpg.Pool, member: Member, browser: Browser
) -> None:
    conv, _ = await conversation(db, member, "Valentina Díaz")
    await customer_writes(db, conv, "Hola")
    opened = await browser.do("open", id=str(conv))
    assert shown(opened["messages"]) == [("inbound", "Hola", False)]
    await customer_writes(db, conv, "¿Siguen abiertos hoy?")
    arrived = await browser.do("wait_message", body="¿Siguen abiertos hoy?")
    assert shown(arrived["messages"]) == [
        ("inbound", "Hola", False),
        ("inbound", "¿Siguen abiertos hoy?", False),
    ]
    # The list follows the conversation's row too.
    await browser.do("wait_preview", id=str(conv), preview="¿Siguen abiertos hoy?")


@pytest.fixture
async def worker(database_url: str, devstack_url: str, redis_url: str) -> Worker:
    stack = TurnStack(database_url, devstack_url, redis_url)
    return Worker(stack, f"arq:queue:test-{RUN_ID}-{uuid.uuid4().hex[:8]}")


@pytest.fixture
async def whatsapp(devstack_url: str) -> AsyncIterator[WhatsAppRecorder]:
    recorder = WhatsAppRecorder(devstack_url)
    yield recorder
    await recorder.aclose()


async def test_a_members_reply_goes_out_through_the_worker_to_whatsapp(
    db: asyncpg.Pool,
    member: Member,
    browser: Browser,
    worker: Worker,
    whatsapp: WhatsAppRecorder,
) -> None:
    conv, phone = await conversation(db, member, "Camila Torres")
    await customer_writes(db, conv, "¿Me puede atender una persona?")
    await browser.do("open", id=str(conv))
    # The RPC's refusal is shown, and nothing is queued.
    refused = await browser.do("reply", text="   ")
    assert refused["error"] is not None
    assert "p_text must be 1 to 4096 characters" in refused["error"]

    proc = await worker.start()
    try:
        sent = await browser.do("reply", text="Hola Camila, soy Laura. Te ayudo yo.")
        assert sent["error"] is None
        # The row shows as the worker moves it along: queued, then taken by WhatsApp.
        shows = await browser.do(
            "wait_message", body="Hola Camila, soy Laura. Te ayudo yo.", status="sent"
        )
        row = shows["messages"][-1]
        assert (row["direction"], row["bot_badge"], row["human_badge"]) == ("outbound", False, True)

        async def delivered() -> bool:
            return await whatsapp.texts(phone) == ["Hola Camila, soy Laura. Te ayudo yo."]

        await eventually(delivered, within=15)
    finally:
        proc.terminate()
        await proc.wait()
    # The reply paused the bot for a human (the workspace's default policy); the page says so
    # and resumes it.
    resumed = await browser.do("resume_bot")
    assert resumed["paused"].startswith("Bot en pausa"), resumed
    assert await db.fetchval(
        "select bot_paused_until is null or bot_paused_until <= now()"
        " from public.conversations where id = $1",
        conv,
    )
    assert (
        await db.fetchval(
            "select count(*) from public.messages where conversation_id = $1"
            " and direction = 'outbound'",
            conv,
        )
        == 1
    )


async def test_the_bot_switch_writes_the_conversations_override(
    db: asyncpg.Pool, member: Member, browser: Browser
) -> None:
    conv, _ = await conversation(db, member, "Sofía Herrera")
    await customer_writes(db, conv, "Prefiero hablar con alguien")
    await browser.do("open", id=str(conv))

    async def override_is(value: bool | None) -> bool:
        current = await db.fetchval(
            "select agent_conversational from public.conversations where id = $1", conv
        )
        return current is value

    assert await override_is(None)
    await browser.do("set_bot", value="off")
    await eventually(lambda: override_is(False), within=10)
    await browser.do("set_bot", value="inherit")
    await eventually(lambda: override_is(None), within=10)


async def test_the_typing_indicator_follows_the_workers_broadcasts_and_expires(
    db: asyncpg.Pool, devstack_url: str, member: Member, browser: Browser
) -> None:
    conv, _ = await conversation(db, member, "Mateo Rojas")
    await customer_writes(db, conv, "Buenas tardes, quiero pedir dos camisetas")
    await bot_replied(db, conv, "¡Claro! ¿En qué talla y color las quieres?", status="read")
    await customer_writes(db, conv, "Talla M, una negra y una blanca")
    await bot_replied(db, conv, "Perfecto: dos camisetas talla M, $90.000 en total.", status="read")
    await customer_writes(db, conv, "¿Y cuánto cuesta el envío a Cali?")
    await browser.do("open", id=str(conv))
    async with aiohttp.ClientSession() as http:
        # The worker's own sender; its START carries `expiresAt` = now + ttl.
        typing = TypingBroadcaster(http, devstack_url, SERVICE_ROLE_KEY, timedelta(seconds=30))
        assert await typing.send(conv, True)
        await browser.do("wait_typing", visible=True)
        if path := os.environ.get("INBOX_SCREENSHOT"):
            await browser.do("screenshot", path=str(ROOT / path))
        assert await typing.send(conv, False)
        await browser.do("wait_typing", visible=False)

        # A START whose STOP never comes (a worker killed mid-turn) clears itself at expiresAt.
        dying = TypingBroadcaster(http, devstack_url, SERVICE_ROLE_KEY, timedelta(seconds=2))
        assert await dying.send(conv, True)
        await browser.do("wait_typing", visible=True)
        expired = await browser.do("wait_typing", visible=False)
        assert 500 < expired["ms"] < 5000, expired


async def test_a_member_of_another_workspace_sees_none_of_its_conversations(
    db: asyncpg.Pool, member: Member, browser: Browser
) -> None:
    theirs, _ = await conversation(db, member, "Not for Dave")
    demo = await make_conversation(db, DEMO_STORE, messages=1)
    own = await make_conversation(db, OTHER_SHOP, messages=1)
    wrong = await browser.do("sign_in", **{"as": "stranger"}, email=DAVE, password="nope")
    assert wrong["error"] == "Invalid login credentials"

    dave = await browser.do("sign_in", **{"as": "dave"}, email=DAVE, password=DEMO_PASSWORD)
    listed = {uuid.UUID(c["id"]) for c in dave["conversations"]}
    assert own.id in listed
    assert theirs not in listed
    assert demo.id not in listed
    workspaces = await db.fetch(
        "select distinct workspace_id from public.conversations where id = any($1::uuid[])",
        list(listed),
    )
    assert [r["workspace_id"] for r in workspaces] == [OTHER_SHOP]
