"""The chaos soak: the full stack under customers and faults, then an invariant check.

    uv run python -m bench soak [--seconds 300] [--customers 340] [--rate 24] \\
        [--api-workers 2] [--workers 2] [--fault-every 4] [--no-faults] [--seed 7]

Its own Postgres cluster and Redis server (the faults restart them), the devstack stand-ins
posting signed status webhooks back, `bridge serve --workers N` and N arq workers, each kept
running by a supervisor that restarts what dies, as production's would. Customers of two
workspaces post signed webhooks at `--rate` per second: single messages, bursts of three in one
body, the same body twice at once, requests for a human, and a few customers whose agent is
switched off and on meanwhile. A webhook that does not get a 200 is retried, as Meta does.
Faults, one every `--fault-every` seconds: SIGKILL of the API or a worker (also while sends are
in flight), Redis restarts, Postgres restarts (fast and immediate), WhatsApp 5xx, timeouts and
throttles longer than the send retries. Then the load stops, the faults are cleared, the stack
drains, and `bench.soak_check` prints the table: every must-be-zero row, latencies and peak RSS.
Exit status 1 when a must-be-zero row is not zero.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx
from realtime import AsyncRealtimeClient
from realtime.types import BroadcastPayload

from bench.harness import free_port, percentile
from bench.soak_check import Sent, check, print_table
from bench.soak_services import PostgresCluster, RedisServer, Supervised, rss_mb
from bridge import migrations
from bridge.settings import LOCAL_SERVICE_ROLE_KEY
from devstack.customer import webhook_body
from devstack.whatsapp.status_webhooks import signature
from devstack.workspaces import Credentials, create_workspace

SECRET = "soak-app-secret"
FAULTS = (
    "kill_api",
    "kill_worker",
    "kill_worker_mid_send",
    "redis_restart",
    "postgres_restart_fast",
    "postgres_restart_immediate",
    "whatsapp_5xx",
    "whatsapp_timeout",
    "whatsapp_throttle",
)


@dataclass
class Customer:
    phone: str
    phone_number_id: str
    toggled: bool = False
    seq: int = 0
    # Each body's messages carry a later second than the customer's previous body: the order
    # the customer wrote in is then in the data, also when a retried webhook arrives late.
    last_timestamp: int = 0
    sent: list[Sent] = field(default_factory=list)


@dataclass
class Stack:
    pg: PostgresCluster
    redis: RedisServer
    devstack_url: str
    api_url: str
    devstack: Supervised
    api: Supervised
    workers: list[Supervised]
    log_dir: Path
    faults: list[tuple[float, str]] = field(default_factory=list)
    acks: list[float] = field(default_factory=list)
    # When each message's webhook first got its 200 (wall clock): it was committed by then.
    acked_at: dict[str, float] = field(default_factory=dict)
    rss: dict[str, float] = field(default_factory=dict)


async def _workspace(url: str, name: str) -> str:
    conn = await asyncpg.connect(url)
    try:
        ws = await create_workspace(
            conn,
            name,
            credentials=Credentials(access_token="soak-token"),
            agent={
                "agent_enabled": True,
                "conversational_agent_id": "diagnostic-v1",
                "response_speed": 0,
            },
        )
    finally:
        await conn.close()
    return ws.phone_number_id


def _env(stack_urls: dict[str, str]) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": stack_urls["database"],
        "REDIS_URL": stack_urls["redis"],
        "ARQ_QUEUE_NAME": "arq:queue:soak",
        "SUPABASE_URL": stack_urls["devstack"],
        "SUPABASE_SERVICE_ROLE_KEY": LOCAL_SERVICE_ROLE_KEY,
        "WHATSAPP_APP_SECRET": SECRET,
        "WHATSAPP_VERIFY_TOKEN": "soak-verify",
        "WHATSAPP_API_BASE_URL": f"{stack_urls['devstack']}/whatsapp/v21.0",
        "WHATSAPP_ACCESS_TOKEN": "soak-token",
        "WHATSAPP_SEND_TIMEOUT_SECONDS": "3",
        "BRIDGE_LOG_LEVEL": "WARNING",
        "JOBS_SWEEP_AFTER_SECONDS": "5",
    }


async def _wait_http(url: str, within: float = 30) -> None:
    deadline = time.monotonic() + within
    async with httpx.AsyncClient() as client:
        while True:
            with contextlib.suppress(httpx.TransportError):
                if (await client.get(url)).status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} did not come up")
            await asyncio.sleep(0.1)


async def _start(args: argparse.Namespace, log_dir: Path) -> Stack:
    pg = PostgresCluster()
    pg.start()
    await pg.wait_ready()
    await migrations.apply(pg.url, seed=True)
    redis = RedisServer()
    redis.start()
    devstack_port, api_port = free_port(), free_port()
    devstack_url = f"http://127.0.0.1:{devstack_port}"
    api_url = f"http://127.0.0.1:{api_port}"
    env = _env({"database": pg.url, "redis": redis.url, "devstack": devstack_url})
    devstack = Supervised(
        "devstack",
        [
            sys.executable,
            "-m",
            "devstack",
            "--port",
            str(devstack_port),
            "--database-url",
            pg.url,
            "--whatsapp-webhook-url",
            f"{api_url}/webhooks/whatsapp",
            "--whatsapp-app-secret",
            SECRET,
        ],
        env,
        log_dir / "devstack.log",
    )
    await devstack.start()
    await _wait_http(f"{devstack_url}/health")
    api = Supervised(
        "api",
        [
            sys.executable,
            "-m",
            "bridge.cli",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(api_port),
            "--workers",
            str(args.api_workers),
        ],
        env,
        log_dir / "api.log",
    )
    await api.start()
    await _wait_http(f"{api_url}/healthz")
    workers = [
        Supervised(
            f"worker{i}",
            [sys.executable, "-m", "arq", "jobs.worker.WorkerSettings"],
            env,
            log_dir / f"worker{i}.log",
        )
        for i in range(args.workers)
    ]
    for w in workers:
        await w.start()
    stack = Stack(pg, redis, devstack_url, api_url, devstack, api, workers, log_dir)
    stack.rss["devstack"] = 0.0
    return stack


async def _post(client: httpx.AsyncClient, stack: Stack, body: bytes, texts: list[str]) -> None:
    """Until a 200, as Meta retries (1 s, doubling, at most 8 s apart)."""
    delay = 1.0
    while True:
        started = time.monotonic()
        try:
            response = await client.post(
                f"{stack.api_url}/webhooks/whatsapp",
                content=body,
                headers={
                    "content-type": "application/json",
                    "x-hub-signature-256": signature(body, SECRET),
                },
                timeout=10,
            )
            if response.status_code == 200:
                stack.acks.append(time.monotonic() - started)
                for text in texts:
                    stack.acked_at.setdefault(text, time.time())
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(delay)
        delay = min(delay * 2, 8.0)


def _body(customer: Customer, texts: list[str]) -> tuple[bytes, list[Sent]]:
    customer.last_timestamp = max(int(time.time()), customer.last_timestamp + 1)
    payload = webhook_body(
        texts[0],
        phone_number_id=customer.phone_number_id,
        sender=customer.phone,
        name="Soak",
        timestamp=customer.last_timestamp,
    )
    value = payload["entry"][0]["changes"][0]["value"]  # type: ignore[index]
    template = value["messages"][0]
    messages, sent = [], []
    for text in texts:
        wamid = f"wamid.SOAK{uuid.uuid4().hex}"
        messages.append({**template, "id": wamid, "text": {"body": text}})
        sent.append(Sent(customer.phone, wamid, text))
    value["messages"] = messages
    return json.dumps(payload, separators=(",", ":")).encode(), sent


async def _load(
    args: argparse.Namespace, stack: Stack, customers: list[Customer], rng: random.Random
) -> None:
    tasks: set[asyncio.Task[None]] = set()
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=200)) as client:
        begin = time.monotonic()
        n = 0
        while time.monotonic() - begin < args.seconds:
            n += 1
            customer = rng.choice(customers)
            roll = rng.random()
            count = 3 if roll < 0.15 else 1
            texts = []
            for _ in range(count):
                customer.seq += 1
                texts.append(f"{customer.phone}-m{customer.seq}")
            if 0.15 <= roll < 0.17:
                texts[-1] += " #handoff"
            body, sent = _body(customer, texts)
            customer.sent.extend(sent)
            copies = 2 if 0.17 <= roll < 0.25 else 1
            for _ in range(copies):
                task = asyncio.create_task(_post(client, stack, body, texts))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            await asyncio.sleep(max(0.0, begin + n / args.rate - time.monotonic()))
        if tasks:
            await asyncio.gather(*tasks)


async def _toggle(stack: Stack, customers: list[Customer], seconds: float) -> None:
    """Members switching the agent off and on for a few conversations."""
    toggled = [c for c in customers if c.toggled]
    begin = time.monotonic()
    while time.monotonic() - begin < seconds:
        await asyncio.sleep(3)
        customer = random.choice(toggled)
        with contextlib.suppress(OSError, asyncpg.PostgresError):
            conn = await asyncpg.connect(stack.pg.url, timeout=3)
            try:
                await conn.execute(
                    "update public.conversations set agent_conversational ="
                    " not coalesce(agent_conversational, true) where phone = $1",
                    customer.phone,
                )
            finally:
                await conn.close()


async def _fault(stack: Stack, name: str, client: httpx.AsyncClient) -> None:
    faults_url = f"{stack.devstack_url}/whatsapp/_control/faults"
    if name == "kill_api":
        stack.api.kill()
    elif name == "kill_worker":
        random.choice(stack.workers).kill()
    elif name == "kill_worker_mid_send":
        await client.post(
            faults_url, json={"kind": "timeout", "seconds": 2, "then": "answer", "count": 4}
        )
        await asyncio.sleep(1.0)
        random.choice(stack.workers).kill()
    elif name == "redis_restart":
        await asyncio.to_thread(stack.redis.restart)
    elif name == "postgres_restart_fast":
        await asyncio.to_thread(stack.pg.restart, "fast")
    elif name == "postgres_restart_immediate":
        await asyncio.to_thread(stack.pg.restart, "immediate")
    elif name == "whatsapp_5xx":
        await client.post(faults_url, json={"kind": "http_error", "status": 500, "count": 3})
    elif name == "whatsapp_timeout":
        await client.post(
            faults_url, json={"kind": "timeout", "seconds": 5, "then": "drop", "count": 2}
        )
    elif name == "whatsapp_throttle":
        await client.post(faults_url, json={"kind": "graph_error", "code": 130429, "count": 12})


async def _faults(args: argparse.Namespace, stack: Stack, rng: random.Random) -> None:
    begin = time.monotonic()
    async with httpx.AsyncClient(timeout=10) as client:
        while time.monotonic() - begin < args.seconds - args.fault_every:
            await asyncio.sleep(args.fault_every)
            name = rng.choice(FAULTS)
            stack.faults.append((time.monotonic() - begin, name))
            with contextlib.suppress(httpx.HTTPError, OSError):
                await _fault(stack, name, client)


async def _sample_rss(stack: Stack, until: asyncio.Event) -> None:
    while not until.is_set():
        for proc in (stack.api, *stack.workers):
            total = sum(rss_mb(pid) for pid in proc.pids())
            stack.rss[proc.name] = max(stack.rss.get(proc.name, 0.0), total)
        await asyncio.sleep(1)


async def _drain(stack: Stack, within: float) -> bool:
    """Until nothing is left to answer or send, five seconds running."""
    deadline = time.monotonic() + within
    quiet_since: float | None = None
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, asyncpg.PostgresError):
            conn = await asyncpg.connect(stack.pg.url, timeout=3)
            try:
                busy = await conn.fetchval(
                    "select count(*) from public.messages where (direction = 'inbound' and not"
                    " processed_by_agent) or status in ('pending', 'sending')"
                )
            finally:
                await conn.close()
            if busy == 0:
                quiet_since = quiet_since or time.monotonic()
                if time.monotonic() - quiet_since > 5:
                    return True
            else:
                quiet_since = None
        await asyncio.sleep(0.5)
    return False


async def _warm_up(stack: Stack, customers: list[Customer]) -> list[str]:
    """One message per customer before the faults begin, so every conversation exists and its
    typing channel can be watched from the start; their ids."""
    async with httpx.AsyncClient() as client:
        for customer in customers:
            customer.seq += 1
            texts = [f"{customer.phone}-m{customer.seq}"]
            body, sent = _body(customer, texts)
            customer.sent.extend(sent)
            await _post(client, stack, body, texts)
    conn = await asyncpg.connect(stack.pg.url)
    try:
        while True:
            ids = await conn.fetch(
                "select id from public.conversations where phone = any($1::text[])",
                [c.phone for c in customers],
            )
            if len(ids) == len(customers):
                return [str(r["id"]) for r in ids]
            await asyncio.sleep(0.2)
    finally:
        await conn.close()


async def _watch_typing(
    stack: Stack, conversations: list[str]
) -> tuple[AsyncRealtimeClient, dict[str, bool]]:
    """The last typing state each conversation's channel carried, as an inbox sees it."""
    client = AsyncRealtimeClient(
        stack.devstack_url.replace("http", "ws", 1) + "/realtime/v1", token=LOCAL_SERVICE_ROLE_KEY
    )
    last: dict[str, bool] = {}
    for conv in conversations:
        channel = client.channel(f"conversation:{conv}")

        def on_typing(message: BroadcastPayload, conv: str = conv) -> None:
            last[conv] = bool(message["payload"].get("isTyping"))

        channel.on_broadcast("typing", on_typing)
        await channel.subscribe()
    return client, last


async def run(args: argparse.Namespace) -> int:
    rng = random.Random(args.seed)
    log_dir = Path(tempfile.mkdtemp(prefix="wab_soak_logs_"))
    stack = await _start(args, log_dir)
    try:
        pnids = [await _workspace(stack.pg.url, f"Soak {i}") for i in range(2)]
        customers = [
            Customer(f"5730{i:08d}", pnids[i % 2], toggled=i < 10) for i in range(args.customers)
        ]
        conversations = await _warm_up(stack, customers)
        watcher, typing = await _watch_typing(stack, conversations)
        done = asyncio.Event()
        sampler = asyncio.create_task(_sample_rss(stack, done))
        work = [_load(args, stack, customers, rng), _toggle(stack, customers, args.seconds)]
        if not args.no_faults:
            work.append(_faults(args, stack, rng))
        started = time.monotonic()
        await asyncio.gather(*work)
        async with httpx.AsyncClient() as client:
            await client.delete(f"{stack.devstack_url}/whatsapp/_control/faults")
        drained = await _drain(stack, args.drain_seconds)
        done.set()
        await sampler
        await asyncio.sleep(1)  # the last STOPs in flight
        await watcher.close()
        report = await check(
            stack.pg.url,
            stack.devstack_url,
            [s for c in customers for s in c.sent],
            toggled={c.phone for c in customers if c.toggled},
            acked_at=stack.acked_at,
        )
        report.must_be_zero["typing left on"] = sum(1 for on in typing.values() if on)
        report.ack_p50 = percentile(stack.acks, 50)
        report.ack_p99 = percentile(stack.acks, 99)
        report.drained = drained
        report.exits = {p.name: p.exits for p in (stack.api, *stack.workers)}
        report.rss = stack.rss
        report.faults = [name for _, name in stack.faults]
        report.seconds = time.monotonic() - started
        print_table(report, args)
        print(f"logs: {log_dir}")
        return 0 if report.ok else 1
    finally:
        for proc in (*stack.workers, stack.api, stack.devstack):
            await proc.stop()
        stack.redis.stop()
        stack.pg.stop()


async def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench soak")
    parser.add_argument("--seconds", type=float, default=300)
    parser.add_argument("--customers", type=int, default=340)
    parser.add_argument("--rate", type=float, default=24, help="webhooks per second")
    parser.add_argument("--api-workers", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--fault-every", type=float, default=4)
    parser.add_argument("--no-faults", action="store_true")
    parser.add_argument("--drain-seconds", type=float, default=120)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    sys.exit(await run(args))
