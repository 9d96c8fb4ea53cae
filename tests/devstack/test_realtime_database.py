"""`realtime.send()` in SQL reaches subscribers after commit, never after a rollback."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
from realtime import AsyncRealtimeClient

from devstack.realtime.database import APPLICATION_NAME
from tests.devstack.phoenix_client import PhoenixClient
from tests.fixtures.devstack import ANON_KEY, SERVICE_ROLE_KEY


def topic() -> str:
    return f"room:{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def subscriber(devstack_url: str) -> AsyncIterator[tuple[PhoenixClient, str]]:
    client = await PhoenixClient.connect(devstack_url)
    name = topic()
    _, reply = await client.join(name)
    assert reply.payload["status"] == "ok"
    yield client, name
    await client.close()


async def test_a_committed_send_is_delivered_with_its_id(
    db: asyncpg.Pool, subscriber: tuple[PhoenixClient, str]
) -> None:
    client, name = subscriber
    async with db.acquire() as conn, conn.transaction():
        await conn.execute("select realtime.send('{\"x\":1}', 'ev', $1, false)", name)
        # nothing before the commit
        await client.nothing(0.3)
    frame = await client.recv()
    assert (frame.topic, frame.event, frame.ref) == (f"realtime:{name}", "broadcast", None)
    payload = frame.payload
    message_id = payload["meta"]["id"]
    assert payload == {
        "type": "broadcast",
        "event": "ev",
        "payload": {"x": 1, "id": message_id},
        "meta": {"id": message_id},
    }
    stored = await db.fetchval(
        "select payload from realtime.messages where id = $1", uuid.UUID(message_id)
    )
    assert json.loads(stored) == {"x": 1, "id": message_id}


async def test_a_rolled_back_send_is_never_delivered(
    db: asyncpg.Pool, subscriber: tuple[PhoenixClient, str]
) -> None:
    client, name = subscriber
    async with db.acquire() as conn:
        tx = conn.transaction()
        await tx.start()
        await conn.execute("select realtime.send('{\"x\":1}', 'ev', $1, false)", name)
        await tx.rollback()
        await conn.execute("select realtime.send('{\"after\":true}', 'ev2', $1, false)", name)
    frame = await client.recv()
    assert frame.payload["event"] == "ev2", "the rolled-back message was delivered"
    await client.nothing()


async def test_send_defaults_to_private(
    devstack_url: str, db: asyncpg.Pool, subscriber: tuple[PhoenixClient, str]
) -> None:
    public, name = subscriber
    private = await PhoenixClient.connect(devstack_url, key=SERVICE_ROLE_KEY)
    try:
        await private.join(name, private=True)
        await db.execute("select realtime.send('{\"secret\":1}', 'ev', $1)", name)
        assert (await private.recv()).payload["payload"]["secret"] == 1
        await public.nothing()
    finally:
        await private.close()


async def test_realtime_py_gets_database_broadcasts(devstack_url: str, db: asyncpg.Pool) -> None:
    client = AsyncRealtimeClient(f"{devstack_url}/realtime/v1", ANON_KEY, auto_reconnect=False)
    received: asyncio.Queue[dict[str, object]] = asyncio.Queue()
    try:
        name = topic()
        channel = client.channel(name)
        channel.on_broadcast("status", lambda m: received.put_nowait(dict(m)))
        await channel.subscribe()
        await db.execute(
            "select realtime.send(jsonb_build_object('state', 'sent'), 'status', $1, false)", name
        )
        message = await asyncio.wait_for(received.get(), 3)
        assert message["event"] == "status"
        assert message["meta"] == {"id": message["payload"]["id"]}  # type: ignore[index]
    finally:
        await client.close()


async def test_delivery_resumes_after_the_listen_connection_is_killed(
    db: asyncpg.Pool, subscriber: tuple[PhoenixClient, str]
) -> None:
    client, name = subscriber
    killed = await db.fetchval(
        "select count(pg_terminate_backend(pid)) from pg_stat_activity "
        "where application_name = $1 and datname = current_database()",
        APPLICATION_NAME,
    )
    assert killed == 1
    deadline = asyncio.get_running_loop().time() + 10
    while True:
        listening = await db.fetchval(
            "select count(*) from pg_stat_activity "
            "where application_name = $1 and datname = current_database()",
            APPLICATION_NAME,
        )
        if listening == 1:
            break
        assert asyncio.get_running_loop().time() < deadline, "the listener did not come back"
        await asyncio.sleep(0.05)
    # LISTEN is issued right after connecting; give it a moment, then send until one arrives.
    for attempt in range(40):
        await db.execute(
            "select realtime.send(jsonb_build_object('n', $2::int), 'ev', $1, false)", name, attempt
        )
        try:
            frame = await client.recv(within=0.25)
        except TimeoutError:
            continue
        assert frame.payload["event"] == "ev"
        return
    raise AssertionError("no database broadcast after the listener reconnected")
