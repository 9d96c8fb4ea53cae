"""Private channels: RLS policies on `realtime.messages` decide who may join (read) and who may
broadcast (write), over the socket and over REST, as on Supabase."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import jwt
import pytest
from realtime import AsyncRealtimeClient, RealtimeSubscribeStates

from devstack.config import LOCAL_JWT_SECRET
from tests.devstack.phoenix_client import PhoenixClient
from tests.fixtures.devstack import ANON_KEY, SERVICE_ROLE_KEY

# Users may read `authz:<their sub>`; only those whose token says `writer` may broadcast there.
POLICIES = """
create policy devstack_test_authz_read on realtime.messages for select to authenticated
  using (realtime.topic() = 'authz:' || (auth.jwt() ->> 'sub'));
create policy devstack_test_authz_write on realtime.messages for insert to authenticated
  with check (
    realtime.topic() = 'authz:' || (auth.jwt() ->> 'sub')
    and extension = 'broadcast'
    and coalesce((auth.jwt() ->> 'writer')::boolean, false)
  );
"""
DROP = """
drop policy if exists devstack_test_authz_read on realtime.messages;
drop policy if exists devstack_test_authz_write on realtime.messages;
"""


@pytest.fixture(scope="module")
async def policies(db: asyncpg.Pool) -> AsyncIterator[None]:
    await db.execute(DROP + POLICIES)
    yield
    await db.execute(DROP)


def user_token(sub: str, *, writer: bool = False, exp: int | None = None) -> str:
    claims: dict[str, Any] = {
        "role": "authenticated",
        "sub": sub,
        "writer": writer,
        "exp": exp or int(time.time()) + 3600,
    }
    return jwt.encode(claims, LOCAL_JWT_SECRET, algorithm="HS256")


def unauthorized(sub_topic: str) -> str:
    return f"Unauthorized: You do not have permissions to read from this Channel topic: {sub_topic}"


@pytest.mark.usefixtures("policies")
async def test_joining_a_private_channel_needs_a_read_policy(devstack_url: str) -> None:
    user = str(uuid.uuid4())
    client = await PhoenixClient.connect(devstack_url)
    try:
        _, reply = await client.join(f"authz:{user}", private=True)  # as anon: no policy
        assert reply.payload == {
            "status": "error",
            "response": {"reason": unauthorized(f"authz:{user}")},
        }
        _, reply = await client.join(f"authz:{user}", private=True, access_token=user_token(user))
        assert reply.payload["status"] == "ok"
        other = f"authz:{uuid.uuid4()}"
        _, reply = await client.join(other, private=True, access_token=user_token(user))
        assert reply.payload["response"] == {"reason": unauthorized(other)}
        # the same name as a public channel needs no policy
        _, reply = await client.join(other, private=False)
        assert reply.payload["status"] == "ok"
    finally:
        await client.close()


@pytest.mark.usefixtures("policies")
async def test_broadcasting_on_a_private_channel_needs_a_write_policy(devstack_url: str) -> None:
    user = str(uuid.uuid4())
    name = f"authz:{user}"
    reader = await PhoenixClient.connect(devstack_url)
    writer = await PhoenixClient.connect(devstack_url, vsn="2.0.0")
    listener = await PhoenixClient.connect(devstack_url)
    try:
        await listener.join(name, private=True, access_token=user_token(user))
        reader_ref, _ = await reader.join(
            name, private=True, ack=True, access_token=user_token(user)
        )
        writer_ref, _ = await writer.join(
            name, private=True, ack=True, access_token=user_token(user, writer=True)
        )
        # refused pushes are dropped without a reply, even with ack
        await reader.broadcast(name, reader_ref, "from-reader", {"n": 1})
        await reader.nothing()
        ref = await writer.broadcast(name, writer_ref, "from-writer", {"n": 2}, binary=True)
        assert (await writer.recv()).ref == ref
        frame = await listener.recv()
        assert frame.payload["event"] == "from-writer"
        await listener.nothing()
    finally:
        for client in (reader, writer, listener):
            await client.close()


@pytest.mark.usefixtures("policies")
async def test_private_rest_broadcasts_need_a_write_policy(devstack_url: str) -> None:
    user = str(uuid.uuid4())
    name = f"authz:{user}"
    listener = await PhoenixClient.connect(devstack_url)
    single = f"/realtime/v1/api/broadcast/{name.replace(':', '%3A')}/events/ev?private=true"
    try:
        await listener.join(name, private=True, access_token=user_token(user))
        async with httpx.AsyncClient(base_url=devstack_url) as http:

            async def post_single(token: str, n: int) -> int:
                headers = {"apikey": ANON_KEY, "Authorization": f"Bearer {token}"}
                response = await http.post(single, json={"n": n}, headers=headers)
                return response.status_code

            assert await post_single(ANON_KEY, 1) == 403
            assert await post_single(user_token(user), 2) == 403
            assert await post_single(user_token(user, writer=True), 3) == 202
            assert await post_single(SERVICE_ROLE_KEY, 4) == 202
            # the batch endpoint answers 202 but drops what the caller may not send
            batch = {
                "messages": [
                    {"topic": name, "event": "ev", "payload": {"n": 5}, "private": True},
                    {"topic": name, "event": "ev", "payload": {"n": 6}, "private": "true"},
                ]
            }
            response = await http.post(
                "/realtime/v1/api/broadcast", json=batch, headers={"apikey": ANON_KEY}
            )
            assert response.status_code == 202
            response = await http.post(
                "/realtime/v1/api/broadcast", json=batch, headers={"apikey": SERVICE_ROLE_KEY}
            )
            assert response.status_code == 202
        seen = [(await listener.recv()).payload["payload"]["n"] for _ in range(4)]
        assert seen == [3, 4, 5, 6]
        await listener.nothing()
    finally:
        await listener.close()


@pytest.mark.usefixtures("policies")
async def test_a_refreshed_token_that_loses_read_access_shuts_the_channel(
    devstack_url: str,
) -> None:
    user = str(uuid.uuid4())
    name = f"authz:{user}"
    client = await PhoenixClient.connect(devstack_url)
    try:
        join_ref, reply = await client.join(name, private=True, access_token=user_token(user))
        assert reply.payload["status"] == "ok"
        await client.push(
            f"realtime:{name}",
            "access_token",
            {"access_token": user_token(user, exp=int(time.time()) + 7200)},
            join_ref=join_ref,
        )
        await client.nothing()
        stranger = user_token(str(uuid.uuid4()))
        await client.push(
            f"realtime:{name}", "access_token", {"access_token": stranger}, join_ref=join_ref
        )
        system = await client.recv()
        assert system.event == "system"
        assert system.payload["message"] == (
            f"You no longer have permission to read from this Channel topic: {name}"
        )
        assert (await client.recv()).event == "phx_close"
    finally:
        await client.close()


@pytest.mark.usefixtures("policies")
async def test_realtime_py_joins_a_private_channel_with_a_user_session(devstack_url: str) -> None:
    user = str(uuid.uuid4())
    client = AsyncRealtimeClient(f"{devstack_url}/realtime/v1", ANON_KEY, auto_reconnect=False)
    received: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    try:
        # what supabase-py does when a user signs in
        await client.set_auth(user_token(user, writer=True))
        params: Any = {
            "config": {
                "broadcast": {"ack": False, "self": True},
                "presence": {"key": "", "enabled": False},
                "private": True,
            }
        }
        channel = client.channel(f"authz:{user}", params)
        channel.on_broadcast("hello", lambda m: received.put_nowait(dict(m)))
        states: list[RealtimeSubscribeStates] = []
        await channel.subscribe(lambda state, _err: states.append(state))
        assert states == [RealtimeSubscribeStates.SUBSCRIBED]
        await channel.send_broadcast("hello", {"from": "me"})
        assert (await asyncio.wait_for(received.get(), 3))["payload"] == {"from": "me"}
    finally:
        await client.close()
