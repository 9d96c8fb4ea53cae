"""The inbox's typing indicator as the frontend's own client (supabase-js) meets it: on the public
channel `conversation:<id>` by default, on the private channel of that name for a workspace that
chose it (`workspace_agent_config.typing_channel_private`), where only members of the
conversation's workspace receive it and only the worker (the service role) can send it."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg
from realtime import AsyncRealtimeClient, RealtimeSubscribeStates

from tests.factories import whatsapp as wa
from tests.factories.tokens import user_token
from tests.fixtures.devstack import ANON_KEY
from tests.fixtures.webhook import WebhookClient
from tests.fixtures.worker import TurnStack, WhatsAppRecorder, Worker, Workspace, make_workspace
from tests.jobs.turns import conversation, say
from tests.js.node import Node, assert_silent, needs_node, read_json, read_line

pytestmark = needs_node

NOBODY = "-"  # the anon key alone, nobody signed in


def refused(conv: uuid.UUID) -> str:
    topic = f"conversation:{conv}"
    return f"Unauthorized: You do not have permissions to read from this Channel topic: {topic}"


class Inbox:
    """supabase-js clients of one conversation's typing channel."""

    def __init__(self, node: Node, stack: TurnStack, conv: uuid.UUID) -> None:
        self.node = node
        self.url = stack.devstack_url
        self.conv = conv

    async def listen(self, visibility: str, token: str) -> tuple[asyncio.subprocess.Process, str]:
        """A subscriber, and how its join was answered."""
        proc = await self.node(
            "typing_channel.mjs", self.url, ANON_KEY, str(self.conv), visibility, token
        )
        return proc, await read_line(proc)

    async def spoof(self, token: str) -> dict[str, str]:
        """Every way supabase-js sends a broadcast, tried with a fake typing START."""
        proc = await self.node("typing_spoof.mjs", self.url, ANON_KEY, str(self.conv), token)
        results = [await read_json(proc) for _ in range(4)]
        return {r["via"]: r["result"] for r in results}


class PythonSubscriber:
    """realtime-py on the private channel, signed in as supabase-py does for a user."""

    def __init__(self, stack: TurnStack, token: str) -> None:
        self.client = AsyncRealtimeClient(
            f"{stack.devstack_url}/realtime/v1", ANON_KEY, auto_reconnect=False
        )
        self.token = token
        self.typing: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def join(self, conv: uuid.UUID) -> list[RealtimeSubscribeStates]:
        await self.client.set_auth(self.token)
        params: Any = {
            "config": {
                "broadcast": {"ack": False, "self": False},
                "presence": {"key": "", "enabled": False},
                "private": True,
            }
        }
        channel = self.client.channel(f"conversation:{conv}", params)
        channel.on_broadcast("typing", lambda m: self.typing.put_nowait(dict(m["payload"])))
        states: list[RealtimeSubscribeStates] = []
        await channel.subscribe(lambda state, _err: states.append(state))
        return states


@dataclass(frozen=True)
class Tenants:
    """A workspace (typing private or not) where a customer wrote, and another workspace."""

    ws: Workspace
    other: Workspace  # its agents are members of another tenant
    phone: str
    conv: uuid.UUID


async def tenants(db: asyncpg.Pool, inbox: WebhookClient, *, private: bool = True) -> Tenants:
    ws = await make_workspace(db, typing_channel_private=private)
    other = await make_workspace(db)
    phone = wa.customer_phone()
    await say(inbox, ws.phone_number_id, phone, "hola")
    return Tenants(ws, other, phone, await conversation(db, ws.id, phone))


def assert_typing(start: dict[str, Any], stop: dict[str, Any], conv: uuid.UUID) -> None:
    assert (start["isTyping"], stop["isTyping"]) == (True, False)
    assert start["source"] == stop["source"] == "agent"
    assert start["conversationId"] == str(conv)
    assert start["expiresAt"] is not None


async def test_private_typing_reaches_members_of_the_workspace_and_nobody_else(
    turn_db: asyncpg.Pool,
    turn_stack: TurnStack,
    inbox: WebhookClient,
    worker: Worker,
    whatsapp: WhatsAppRecorder,
    node: Node,
) -> None:
    t = await tenants(turn_db, inbox)
    ws, other, conv = t.ws, t.other, t.conv
    clients = Inbox(node, turn_stack, conv)
    member, joined = await clients.listen("private", user_token(ws.agents[0]))
    assert joined == "SUBSCRIBED"
    # The anon key alone and an agent of another workspace cannot join the private channel.
    for token in (NOBODY, user_token(other.agents[0])):
        _, answer = await clients.listen("private", token)
        assert answer == f"CHANNEL_ERROR {refused(conv)}"
    # The public channel of that name is open to anyone, and the worker says nothing there.
    eavesdropper, joined = await clients.listen("public", NOBODY)
    assert joined == "SUBSCRIBED"
    # The Python client meets the same rules.
    colleague = PythonSubscriber(turn_stack, user_token(ws.agents[1]))
    stranger = PythonSubscriber(turn_stack, user_token(other.agents[1]))
    try:
        assert await colleague.join(conv) == [RealtimeSubscribeStates.SUBSCRIBED]
        assert await stranger.join(conv) == [RealtimeSubscribeStates.CHANNEL_ERROR]

        assert await worker.burst() == 0

        assert await whatsapp.texts(t.phone) == ["Recibido (1): hola"]
        start, stop = await read_json(member), await read_json(member)
        assert_typing(start, stop, conv)
        received = [await asyncio.wait_for(colleague.typing.get(), 5) for _ in range(2)]
        assert received == [start, stop]
        await assert_silent(eavesdropper)
    finally:
        await colleague.client.close()
        await stranger.client.close()


async def test_nobody_but_the_worker_can_send_private_typing(
    turn_db: asyncpg.Pool,
    turn_stack: TurnStack,
    inbox: WebhookClient,
    node: Node,
) -> None:
    t = await tenants(turn_db, inbox)
    ws, other, conv = t.ws, t.other, t.conv
    clients = Inbox(node, turn_stack, conv)
    member, joined = await clients.listen("private", user_token(ws.agents[1]))
    assert joined == "SUBSCRIBED"

    anon, outsider, colleague = await asyncio.gather(
        clients.spoof(NOBODY),
        clients.spoof(user_token(other.agents[0])),
        clients.spoof(user_token(ws.agents[0])),
    )

    for results in (anon, outsider):
        assert results == {
            "private-http": "rejected: Unauthorized",
            "private-rest": "ok",  # the batch endpoint answers 202 and drops it
            "private-socket": f"join refused: {refused(conv)}",
            "public-socket": "ok",  # heard on the public channel only
        }
    # A member may listen, not speak: the push is dropped, never acked.
    assert colleague == {
        "private-http": "rejected: Unauthorized",
        "private-rest": "ok",
        "private-socket": "timed out",
        "public-socket": "ok",
    }
    await assert_silent(member)


async def test_a_projects_broader_realtime_policies_do_not_open_conversation_topics(
    turn_db: asyncpg.Pool,
    turn_stack: TurnStack,
    inbox: WebhookClient,
    node: Node,
) -> None:
    """Supabase's quick-start policies let any signed-in user read and send on every private
    channel; with sign-up open, that would be everyone. Conversation topics stay closed."""
    t = await tenants(turn_db, inbox)
    ws, other, conv = t.ws, t.other, t.conv
    clients = Inbox(node, turn_stack, conv)
    await turn_db.execute(
        "create policy test_everyone_reads on realtime.messages for select to anon, authenticated"
        " using (true);"
        " create policy test_everyone_sends on realtime.messages for insert"
        " to anon, authenticated with check (true)"
    )
    try:
        member, joined = await clients.listen("private", user_token(ws.agents[0]))
        assert joined == "SUBSCRIBED"
        for token in (NOBODY, user_token(other.agents[0])):
            _, answer = await clients.listen("private", token)
            assert answer == f"CHANNEL_ERROR {refused(conv)}"
        colleague = await clients.spoof(user_token(ws.agents[1]))
        assert colleague["private-http"] == "rejected: Unauthorized"
        assert colleague["private-socket"] == "timed out"
        await assert_silent(member)
    finally:
        await turn_db.execute(
            "drop policy test_everyone_reads on realtime.messages;"
            " drop policy test_everyone_sends on realtime.messages"
        )


async def test_public_typing_stays_the_default(
    turn_db: asyncpg.Pool,
    turn_stack: TurnStack,
    inbox: WebhookClient,
    worker: Worker,
    node: Node,
) -> None:
    t = await tenants(turn_db, inbox, private=False)
    ws, conv = t.ws, t.conv
    clients = Inbox(node, turn_stack, conv)
    subscriber, joined = await clients.listen("public", NOBODY)  # the frontend as it is
    assert joined == "SUBSCRIBED"
    member, joined = await clients.listen("private", user_token(ws.agents[0]))
    assert joined == "SUBSCRIBED"

    assert await worker.burst() == 0

    start, stop = await read_json(subscriber), await read_json(subscriber)
    assert_typing(start, stop, conv)
    await assert_silent(member)
