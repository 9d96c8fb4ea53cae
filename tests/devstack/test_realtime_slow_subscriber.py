"""A subscriber that stops reading must not delay anyone else: its bounded outbox overflows and
the server drops it, while the other subscribers get everything at full speed."""

from __future__ import annotations

import asyncio
import uuid

import httpx
from websockets.exceptions import ConnectionClosed

from tests.devstack.phoenix_client import PhoenixClient
from tests.fixtures.devstack import SERVICE_ROLE_KEY

MESSAGES = 320
BATCH = 16
BLOB = "x" * 64_000  # 320 x 64 kB = 20 MB, well past socket buffers plus the outbox bound


async def read_all(client: PhoenixClient, count: int) -> int:
    seen = 0
    while seen < count:
        frame = await client.recv(within=10)
        if frame.event == "broadcast":
            seen += 1
    return seen


async def test_a_stalled_subscriber_is_dropped_without_delaying_the_others(
    devstack_url: str,
) -> None:
    name = f"room:{uuid.uuid4().hex[:12]}"
    slow = await PhoenixClient.connect(devstack_url, receive_buffer=4096)
    fast = [await PhoenixClient.connect(devstack_url, vsn=v) for v in ("1.0.0", "2.0.0", "1.0.0")]
    try:
        await slow.join(name)
        for client in fast:
            await client.join(name)
        # From here on `slow` reads nothing.
        readers = [asyncio.create_task(read_all(client, MESSAGES)) for client in fast]
        async with httpx.AsyncClient(
            base_url=devstack_url, headers={"apikey": SERVICE_ROLE_KEY}
        ) as http:
            for start in range(0, MESSAGES, BATCH):
                messages = [
                    {"topic": name, "event": "bulk", "payload": {"n": n, "blob": BLOB}}
                    for n in range(start, start + BATCH)
                ]
                response = await http.post(
                    "/realtime/v1/api/broadcast", json={"messages": messages}
                )
                assert response.status_code == 202
        # A hub that waited on the stalled socket would block long before this.
        counts = await asyncio.wait_for(asyncio.gather(*readers), 20)
        assert counts == [MESSAGES] * len(fast)

        # The stalled client was cut off: reading now, it finds fewer frames, then the end.
        received = 0
        try:
            while True:
                frame = await slow.recv(within=5)
                if frame.event == "broadcast":
                    received += 1
        except ConnectionClosed:
            pass
        assert 0 < received < MESSAGES
    finally:
        for client in (slow, *fast):
            await client.close()
