"""Agent turns under load: the real arq worker(s), the diagnostic engine, the devstack
stand-ins and Postgres on this machine.

    uv run python -m bench turns [--conversations 1000] [--workers 1,2] [--max-jobs 5] \\
        [--poll-delay 0.01] [--think-ms 2000 [--think-max-jobs N] [--paced-seconds 10]]

For each worker count: 1,000 conversations get two inbound messages each, stored through
`public.ingest_whatsapp_webhook` 50 conversations per call and rung as the webhook rings them
(`bridge.queue.Enqueuer`: one job per message, a conversation's second job due a moment after its
first); then the workers run in burst mode until every turn is done. Reported:
- turns/s: turns completed / (last reply sent - first lock taken);
- overhead: per turn, lock taken -> its reply recorded as sent (DB writes, typing broadcasts,
  the WhatsApp stand-in call), p50/p99;
- typing START latency: lock taken -> a realtime-py subscriber receives START, p99 over a sample
  of 100 conversations;
- ordering violations: conversations whose reply does not quote its messages in stored order,
  that got more than one reply, or whose messages are not all processed (must be 0);
- peak connections: the most Postgres sessions the workers held at once (`pg_stat_activity`,
  sampled every 50 ms).

Real turns wait: with `--think-ms MS`, each worker count also runs two scenarios where every reply
goes out MS after its turn decided (response speed 1, the diagnostic engine's `#delay=`), at the
workers' own JOBS_MAX_JOBS unless `--think-max-jobs` says otherwise: "think burst" (the same
burst) and "think paced" (customers arriving at half the zero-delay turns/s for
`--paced-seconds`, once every worker has started). Their latency is the time beyond the designed
delay, from the customer's last message stored to the reply recorded sent, p50/p99. A burst's
turns/s is also given net of its designed delay (turns / (span - delay)): no machinery answers a
burst sooner than that one delay, so that rate is the one compared with the zero-delay rate.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import sys
import time
import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg
from arq import create_pool
from realtime import AsyncRealtimeClient
from realtime.types import BroadcastPayload

from bench import cpu
from bench.harness import bench_database, devstack, percentile
from bridge.queue import Enqueuer, TurnJob, redis_settings
from bridge.settings import LOCAL_SERVICE_ROLE_KEY
from devstack.workspaces import Credentials, create_workspace

REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
# The workers' sessions carry this name (asyncpg passes unknown DSN parameters as settings).
WORKER_APPLICATION = "bench-turns-worker"
# Whose CPU is reported per turn (the realtime subscriber runs in this process: "load").
CPU_ROLES = ("worker", "stand-in", "postgres", "redis", "load")


@dataclass(frozen=True)
class Scenario:
    name: str
    think_ms: int = 0
    # Customers per second arriving while the workers wait; None: all of them before they start.
    rate: float | None = None
    seconds: float = 0.0
    max_jobs: int | None = None


async def _workspace(db: asyncpg.Pool, response_speed: float) -> tuple[uuid.UUID, str]:
    async with db.acquire() as conn:
        ws = await create_workspace(
            conn,
            "Bench",
            credentials=Credentials(access_token="bench-token"),
            agent={
                "agent_enabled": True,
                "conversational_agent_id": "diagnostic-v1",
                "response_speed": response_speed,
            },
        )
    return ws.id, ws.phone_number_id


async def _ingest(
    db: asyncpg.Pool, pnid: str, phones: list[str], think_ms: int
) -> list[dict[str, Any]]:
    """Two inbound messages per customer in one webhook batch; the new messages stored."""
    now = int(time.time())
    steer = f" #delay={think_ms}" if think_ms else ""
    rows = [
        {
            "direction": "inbound",
            "phone_number_id": pnid,
            "wamid": f"wamid.B{uuid.uuid4().hex}",
            "phone": phone,
            "bsuid": None,
            "profile_name": None,
            "type": "text",
            "content": {"body": f"{phone}-{n}{steer}"},
            "timestamp": now + n,
            "context_wamid": None,
        }
        for phone in phones
        for n in (1, 2)
    ]
    result = await db.fetchval(
        "select public.ingest_whatsapp_webhook('meta', '{}'::jsonb, $1::jsonb, '[]'::jsonb)",
        json.dumps(rows),
    )
    new: list[dict[str, Any]] = json.loads(result)["new_inbound"]
    return new


async def _ring(enqueuer: Enqueuer, batch: list[dict[str, Any]]) -> None:
    """As the webhook rings: one job per message, one call per webhook batch."""
    await enqueuer.enqueue(
        [TurnJob.for_message(m["conversation_id"], m["message_id"], None) for m in batch]
    )


async def _watch_typing(
    url: str, conversations: list[str]
) -> tuple[AsyncRealtimeClient, dict[str, float]]:
    client = AsyncRealtimeClient(
        url.replace("http", "ws", 1) + "/realtime/v1", token=LOCAL_SERVICE_ROLE_KEY
    )
    started: dict[str, float] = {}
    for conv in conversations:
        channel = client.channel(f"conversation:{conv}")

        def on_typing(message: BroadcastPayload, conv: str = conv) -> None:
            if message["payload"].get("isTyping") and conv not in started:
                started[conv] = time.time()

        channel.on_broadcast("typing", on_typing)
        await channel.subscribe()
    return client, started


async def _run(args: argparse.Namespace, workers: int, scenario: Scenario) -> dict[str, Any]:
    queue = f"arq:queue:bench-{uuid.uuid4().hex[:8]}"
    phones = [f"5731{i:08d}" for i in range(args.conversations)]
    if scenario.rate is not None:
        phones = phones[: max(1, round(scenario.rate * scenario.seconds))]
    async with (
        bench_database(history=args.history) as database_url,
        devstack(database_url) as url,
    ):
        db = await asyncpg.create_pool(database_url, min_size=1, max_size=5)
        ws, pnid = await _workspace(db, 1.0 if scenario.think_ms else 0.0)
        redis = await create_pool(redis_settings(REDIS_URL), default_queue_name=queue)
        enqueuer = Enqueuer(REDIS_URL, queue)
        burst = scenario.rate is None
        batches = (
            [
                await _ingest(db, pnid, phones[i : i + 50], scenario.think_ms)
                for i in range(0, len(phones), 50)
            ]
            if burst
            else []
        )
        sample = sorted({m["conversation_id"] for b in batches for m in b})[:100]
        client, started = await _watch_typing(url, sample)
        for batch in batches:
            await _ring(enqueuer, batch)
        separator = "&" if "?" in database_url else "?"
        env = {
            **os.environ,
            "DATABASE_URL": f"{database_url}{separator}application_name={WORKER_APPLICATION}",
            "REDIS_URL": REDIS_URL,
            "ARQ_QUEUE_NAME": queue,
            "SUPABASE_URL": url,
            "SUPABASE_SERVICE_ROLE_KEY": LOCAL_SERVICE_ROLE_KEY,
            "WHATSAPP_API_BASE_URL": f"{url}/whatsapp/v21.0",
            "BRIDGE_LOG_LEVEL": "WARNING",
            "JOBS_POLL_DELAY_SECONDS": str(args.poll_delay),
            "JOBS_SWEEP_AFTER_SECONDS": "3600",
        }
        max_jobs = scenario.max_jobs if scenario.think_ms else args.max_jobs
        if max_jobs is not None:
            env["JOBS_MAX_JOBS"] = str(max_jobs)
        else:
            env.pop("JOBS_MAX_JOBS", None)
        command = [sys.executable, "-m", "arq", "jobs.worker.WorkerSettings"]
        children_before = _children_cpu()
        peak = _PeakConnections(db)
        with cpu.Sampler() as sampler:
            procs = [
                await asyncio.create_subprocess_exec(
                    *command, *(["--burst"] if burst else []), env=env
                )
                for _ in range(workers)
            ]
            peak.start()
            if not burst:
                await _until_ready(db, workers)
                await _arrive(db, enqueuer, pnid, phones, scenario)
                await _until_answered(db, ws, len(phones), procs)
                for proc in procs:
                    if proc.returncode is None:
                        proc.terminate()
            await asyncio.gather(*(p.wait() for p in procs))
            await peak.stop()
        await enqueuer.close()
        cpu_spent = sampler.spent()
        # The workers have exited: their CPU is what the waited-for children used.
        cpu_spent["worker"] = _children_cpu() - children_before
        await asyncio.sleep(0.5)
        await client.close()
        report = await _measure(db, ws, started, scenario.think_ms)
        report["peak_connections"] = peak.value
        report["cpu"] = cpu.per_item(cpu_spent, report["turns"], CPU_ROLES)
        await redis.delete(queue)
        await redis.aclose()
        await db.close()
        return report


async def _arrive(
    db: asyncpg.Pool, enqueuer: Enqueuer, pnid: str, phones: list[str], scenario: Scenario
) -> None:
    """Customers arriving at the scenario's rate, stored and rung every 100 ms."""
    assert scenario.rate is not None
    begin = time.monotonic()
    sent = 0
    while sent < len(phones):
        due = min(len(phones), round(scenario.rate * (time.monotonic() - begin + 0.1)))
        if due > sent:
            await _ring(enqueuer, await _ingest(db, pnid, phones[sent:due], scenario.think_ms))
            sent = due
        await asyncio.sleep(0.1)


async def _until_ready(db: asyncpg.Pool, workers: int) -> None:
    """Until every worker has started: its pool, its listener and its lock session connected
    (the health probe opens the session after start-up)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        connected = await db.fetchval(
            "select count(*) from pg_stat_activity where application_name = $1",
            WORKER_APPLICATION,
        )
        if connected >= 3 * workers:
            return
        await asyncio.sleep(0.05)
    raise RuntimeError("the workers did not start within 60 s")


async def _until_answered(
    db: asyncpg.Pool, ws: uuid.UUID, customers: int, procs: list[asyncio.subprocess.Process]
) -> None:
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and all(p.returncode is None for p in procs):
        answered = await db.fetchval(
            "select count(distinct conversation_id) from public.messages"
            " where workspace_id = $1 and direction = 'outbound' and status = 'sent'",
            ws,
        )
        if answered >= customers:
            return
        await asyncio.sleep(0.2)


class _PeakConnections:
    """The most Postgres sessions the workers held at once."""

    def __init__(self, db: asyncpg.Pool) -> None:
        self._db = db
        self.value = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._sample())

    async def _sample(self) -> None:
        while True:
            count = await self._db.fetchval(
                "select count(*) from pg_stat_activity where application_name = $1",
                WORKER_APPLICATION,
            )
            self.value = max(self.value, count)
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


async def _measure(
    db: asyncpg.Pool, ws: uuid.UUID, started: dict[str, float], think_ms: int
) -> dict[str, Any]:
    rows = await db.fetch(
        """
        select c.id, extract(epoch from f.acquired_at) as locked,
               (select array_agg(extract(epoch from m.timestamp) order by m.timestamp)
                  from public.messages m where m.conversation_id = c.id
                   and m.direction = 'outbound' and m.status = 'sent') as sent_at,
               (select array_agg(m.content ->> 'body' order by m.timestamp)
                  from public.messages m where m.conversation_id = c.id
                   and m.direction = 'outbound') as replies,
               (select array_agg(m.content ->> 'body' order by m.timestamp, m.received_seq)
                  from public.messages m where m.conversation_id = c.id
                   and m.direction = 'inbound') as inbound,
               (select extract(epoch from max(m.created_at)) from public.messages m
                 where m.conversation_id = c.id and m.direction = 'inbound') as arrived,
               (select bool_and(m.processed_by_agent) from public.messages m
                 where m.conversation_id = c.id and m.direction = 'inbound') as processed
          from public.conversations c
          join public.conversation_turn_fences f on f.conversation_id = c.id
         where c.workspace_id = $1
        """,
        ws,
    )
    overhead, beyond, violations, turns = [], [], 0, 0
    first, last = float("inf"), 0.0
    for r in rows:
        replies = r["replies"] or []
        turns += len(replies)
        expected = "Recibido ({}): {}".format(len(r["inbound"]), " | ".join(r["inbound"]))
        if replies != [expected] or not r["processed"] or not r["sent_at"]:
            violations += 1
            continue
        sent = float(r["sent_at"][-1])
        overhead.append(sent - float(r["locked"]))
        beyond.append(sent - float(r["arrived"]) - think_ms / 1000)
        first, last = min(first, float(r["locked"])), max(last, sent)
    locked = {str(r["id"]): float(r["locked"]) for r in rows}
    typing = [t - locked[c] for c, t in started.items() if c in locked]
    return {
        "conversations": len(rows),
        "turns": turns,
        "turns_per_s": turns / (last - first) if last > first else float("nan"),
        # A burst cannot be answered sooner than its designed delay, whatever the machinery
        # does: its rate net of that one delay is what compares with the zero-delay rate.
        "net_turns_per_s": (
            turns / (last - first - think_ms / 1000)
            if last - first > think_ms / 1000
            else float("nan")
        ),
        "overhead_p50_ms": percentile(overhead, 50) * 1000,
        "overhead_p99_ms": percentile(overhead, 99) * 1000,
        "beyond_p50_ms": percentile(beyond, 50) * 1000,
        "beyond_p99_ms": percentile(beyond, 99) * 1000,
        "typing_p99_ms": percentile(typing, 99) * 1000 if typing else float("nan"),
        "typing_n": len(typing),
        "violations": violations,
    }


async def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench turns")
    parser.add_argument("--conversations", type=int, default=1000)
    parser.add_argument("--workers", default="1,2")
    # The diagnostic engine is CPU-bound: turns beyond a few per worker only queue for the cores,
    # so the zero-delay default is lower than JOBS_MAX_JOBS's.
    parser.add_argument("--max-jobs", type=int, default=5)
    parser.add_argument(
        "--history",
        type=int,
        default=20_000,
        help="past customers of another workspace written and analyzed first (bench.history)",
    )
    parser.add_argument("--poll-delay", type=float, default=0.01, help="arq poll delay, seconds")
    parser.add_argument(
        "--think-ms", type=int, default=0, help="also run scenarios whose replies wait this long"
    )
    parser.add_argument(
        "--think-max-jobs",
        type=int,
        default=None,
        help="JOBS_MAX_JOBS of the think scenarios (default: the worker's own)",
    )
    parser.add_argument("--paced-seconds", type=float, default=10.0)
    args = parser.parse_args(argv)
    print(
        "workers | scenario | conversations | turns | turns/s | overhead p50 | overhead p99 |"
        " beyond delay p50 / p99 | typing START p99 | ordering violations |"
        " peak worker connections | CPU ms per turn"
    )
    for workers in [int(w) for w in args.workers.split(",")]:
        zero = await _run(args, workers, Scenario("zero-delay burst"))
        _print(workers, "zero-delay burst", zero)
        if not args.think_ms:
            continue
        think = Scenario(
            f"think {args.think_ms} ms burst", args.think_ms, max_jobs=args.think_max_jobs
        )
        _print(workers, think.name, await _run(args, workers, think), zero)
        paced = Scenario(
            f"think {args.think_ms} ms paced {zero['turns_per_s'] / 2:.0f}/s",
            args.think_ms,
            rate=zero["turns_per_s"] / 2,
            seconds=args.paced_seconds,
            max_jobs=args.think_max_jobs,
        )
        _print(workers, paced.name, await _run(args, workers, paced))


def _print(workers: int, name: str, r: dict[str, Any], zero: dict[str, Any] | None = None) -> None:
    rate = f"{r['turns_per_s']:.0f}"
    if zero and r["turns_per_s"] != r["net_turns_per_s"]:
        net = r["net_turns_per_s"]
        rate += f", net of the delay {net:.0f} ({net / zero['turns_per_s']:.0%} of zero-delay)"
    print(
        f"{workers} | {name} | {r['conversations']} | {r['turns']} |"
        f" {rate} |"
        f" {r['overhead_p50_ms']:.1f} ms | {r['overhead_p99_ms']:.1f} ms |"
        f" {r['beyond_p50_ms']:.0f} / {r['beyond_p99_ms']:.0f} ms |"
        f" {r['typing_p99_ms']:.1f} ms (n={r['typing_n']}) | {r['violations']} |"
        f" {r['peak_connections']} | {r['cpu']}",
        flush=True,
    )
