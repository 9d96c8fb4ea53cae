"""Postgres Changes through the project's Python client, realtime-py (vsn 1.0.0), signed in as a
workspace member."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
from realtime import AsyncRealtimeClient, RealtimePostgresChangesListenEvent

from tests.devstack.test_realtime_postgres_changes import insert_customer_message, make_inbox
from tests.factories.tokens import user_token
from tests.fixtures.devstack import ANON_KEY


async def test_realtime_py_gets_the_same_insert(devstack_url: str, db: asyncpg.Pool) -> None:
    inbox = await make_inbox(db)
    client = AsyncRealtimeClient(f"{devstack_url}/realtime/v1", ANON_KEY, auto_reconnect=False)
    received: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    systems: list[dict[str, Any]] = []
    try:
        await client.set_auth(user_token(inbox.member))
        channel = client.channel(f"inbox:{uuid.uuid4().hex[:8]}")
        channel.on_postgres_changes(
            RealtimePostgresChangesListenEvent.Insert,
            lambda payload: received.put_nowait(dict(payload)),
            table="messages",
            schema="public",
            filter=f"conversation_id=eq.{inbox.conversation_id}",
        )
        channel.on_system(lambda payload: systems.append(dict(payload)))
        await channel.subscribe()

        message_id = await insert_customer_message(db, inbox)
        payload = await asyncio.wait_for(received.get(), 5)
        data = payload["data"]
        assert payload["ids"] == [channel.postgres_changes_callbacks[0].id]
        assert (data["type"], data["schema"], data["table"]) == ("INSERT", "public", "messages")
        assert data["record"]["id"] == str(message_id)
        assert data["record"]["conversation_id"] == str(inbox.conversation_id)
        assert {"name": "id", "type": "uuid"} in data["columns"]
        assert systems[0]["message"] == "Subscribed to PostgreSQL"
    finally:
        await client.close()
