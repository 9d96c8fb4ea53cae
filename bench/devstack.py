"""The local Supabase stand-in under load: RPC calls/s (supabase-py → devstack → Postgres), with
supabase-py's default httpx client and with the bridge's (`bridge.http_pool`: straight to
aiohttp), and the client's CPU per call, against a direct asyncpg call of the same function, and
Realtime broadcast latency from `http_send` to 100 realtime-py subscribers.

    uv run python -m bench devstack [--seconds 10] [--concurrency 32] [--subscribers 100]
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid

import asyncpg
import httpx
from realtime import AsyncRealtimeClient
from realtime.types import BroadcastPayload
from supabase import AsyncClientOptions, acreate_client

from bench.harness import bench_database, devstack, summary_ms
from bridge.http_pool import pooled_client
from bridge.settings import LOCAL_SERVICE_ROLE_KEY

FUNCTION = """
create or replace function public.bench_add(a int, b int) returns int
language sql stable as $$ select a + b $$;
"""


async def _rpc_rate(
    url: str, seconds: float, concurrency: int, http: httpx.AsyncClient | None = None
) -> tuple[float, list[float], float]:
    """Calls/s, latencies and this process's CPU ms per call (the client's cost: the stand-in
    and Postgres run in other processes)."""
    options = AsyncClientOptions(httpx_client=http) if http is not None else AsyncClientOptions()
    client = await acreate_client(url, LOCAL_SERVICE_ROLE_KEY, options=options)
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    async def loop() -> None:
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            result = await client.rpc("bench_add", {"a": 1, "b": 2}).execute()
            assert result.data == 3
            latencies.append(time.perf_counter() - t0)

    start, cpu_start = time.perf_counter(), time.process_time()
    await asyncio.gather(*(loop() for _ in range(concurrency)))
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    await client.postgrest.aclose()
    if http is not None:
        await http.aclose()
    calls = max(len(latencies), 1)
    return len(latencies) / elapsed, latencies, cpu / calls * 1000


async def _direct_rate(
    database_url: str, seconds: float, concurrency: int
) -> tuple[float, list[float]]:
    pool = await asyncpg.create_pool(database_url, min_size=concurrency, max_size=concurrency)
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    async def loop() -> None:
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            assert await pool.fetchval("select public.bench_add($1, $2)", 1, 2) == 3
            latencies.append(time.perf_counter() - t0)

    start = time.perf_counter()
    await asyncio.gather(*(loop() for _ in range(concurrency)))
    elapsed = time.perf_counter() - start
    await pool.close()
    return len(latencies) / elapsed, latencies


async def _broadcast_latency(url: str, subscribers: int, messages: int) -> list[float]:
    ws_url = url.replace("http", "ws", 1) + "/realtime/v1"
    topic = f"conversation:{uuid.uuid4()}"
    received: list[float] = []
    clients: list[AsyncRealtimeClient] = []
    for _ in range(subscribers):
        client = AsyncRealtimeClient(ws_url, token=LOCAL_SERVICE_ROLE_KEY)
        channel = client.channel(topic)

        def on_typing(payload: BroadcastPayload) -> None:
            received.append(time.perf_counter() - payload["payload"]["sentAt"])

        channel.on_broadcast("typing", on_typing)
        await channel.subscribe()
        clients.append(client)
    sender = AsyncRealtimeClient(ws_url, token=LOCAL_SERVICE_ROLE_KEY).channel(topic)
    for i in range(messages):
        await sender.http_send(
            "typing", {"isTyping": i % 2 == 0, "source": "agent", "sentAt": time.perf_counter()}
        )
        await asyncio.sleep(0.02)
    for _ in range(100):
        if len(received) >= subscribers * messages:
            break
        await asyncio.sleep(0.05)
    for client in clients:
        await client.close()
    lost = subscribers * messages - len(received)
    if lost:
        print(f"  broadcast: {lost} deliveries missing")
    return received


async def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench devstack")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--subscribers", type=int, default=100)
    parser.add_argument("--messages", type=int, default=100)
    args = parser.parse_args(argv)
    async with bench_database() as database_url:
        conn = await asyncpg.connect(database_url)
        await conn.execute(FUNCTION)
        await conn.close()
        async with devstack(database_url) as url:
            rate, lat, cpu = await _rpc_rate(url, args.seconds, args.concurrency)
            print(
                f"RPC via supabase-py (default httpx client): {rate:,.0f} calls/s,"
                f" client CPU {cpu:.2f} ms/call; {summary_ms(lat)}"
            )
            # The bridge's own client (bridge/http_pool.py).
            pooled = pooled_client(timeout=10, max_connections=100)
            rate, lat, cpu = await _rpc_rate(url, args.seconds, args.concurrency, pooled)
            print(
                f"RPC via supabase-py (the bridge's client):  {rate:,.0f} calls/s,"
                f" client CPU {cpu:.2f} ms/call; {summary_ms(lat)}"
            )
            direct, dlat = await _direct_rate(database_url, args.seconds, args.concurrency)
            print(f"direct asyncpg call:            {direct:,.0f} calls/s; {summary_ms(dlat)}")
            latencies = await _broadcast_latency(url, args.subscribers, args.messages)
            print(f"broadcast http_send -> {args.subscribers} subscribers: {summary_ms(latencies)}")
