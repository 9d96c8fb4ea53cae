"""Agent turns under load: the real arq worker(s), the diagnostic engine, zero delays, the
devstack stand-ins and Postgres on this machine.

    uv run python -m bench turns [--conversations 1000] [--workers 1,2] [--max-jobs 5] \\
        [--poll-delay 0.01]

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
  that got more than one reply, or whose messages are not all processed (must be 0).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sys
import time
import uuid
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
# Whose CPU is reported per turn (the realtime subscriber runs in this process: "load").
CPU_ROLES = ("worker", "stand-in", "postgres", "redis", "load")


async def _workspace(db: asyncpg.Pool) -> tuple[uuid.UUID, str]:
    async with db.acquire() as conn:
        ws = await create_workspace(
            conn,
            "Bench",
            credentials=Credentials(access_token="bench-token"),
            agent={
                "agent_enabled": True,
                "conversational_agent_id": "diagnostic-v1",
                "response_speed": 0,
            },
        )
    return ws.id, ws.phone_number_id


async def _ingest(db: asyncpg.Pool, pnid: str, conversations: int) -> list[list[dict[str, Any]]]:
    """The new inbound messages of each webhook batch (50 conversations, 2 messages each)."""
    now = int(time.time())
    new: list[list[dict[str, Any]]] = []
    phones = [f"5731{i:08d}" for i in range(conversations)]
    for start in range(0, conversations, 50):
        rows = [
            {
                "direction": "inbound",
                "phone_number_id": pnid,
                "wamid": f"wamid.B{uuid.uuid4().hex}",
                "phone": phone,
                "bsuid": None,
                "profile_name": None,
                "type": "text",
                "content": {"body": f"{phone}-{n}"},
                "timestamp": now + n,
                "context_wamid": None,
            }
            for phone in phones[start : start + 50]
            for n in (1, 2)
        ]
        result = await db.fetchval(
            "select public.ingest_whatsapp_webhook('meta', '{}'::jsonb, $1::jsonb, '[]'::jsonb)",
            json.dumps(rows),
        )
        new.append(json.loads(result)["new_inbound"])
    return new


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


async def _run(args: argparse.Namespace, workers: int) -> dict[str, Any]:
    queue = f"arq:queue:bench-{uuid.uuid4().hex[:8]}"
    async with (
        bench_database(history=args.history) as database_url,
        devstack(database_url) as url,
    ):
        db = await asyncpg.create_pool(database_url, min_size=1, max_size=5)
        ws, pnid = await _workspace(db)
        batches = await _ingest(db, pnid, args.conversations)
        sample = sorted({m["conversation_id"] for b in batches for m in b})[:100]
        client, started = await _watch_typing(url, sample)
        redis = await create_pool(redis_settings(REDIS_URL), default_queue_name=queue)
        # Rung as the webhook rings them: one job per message, one batch per webhook call.
        enqueuer = Enqueuer(REDIS_URL, queue)
        for batch in batches:
            await enqueuer.enqueue(
                [TurnJob.for_message(m["conversation_id"], m["message_id"], None) for m in batch]
            )
        await enqueuer.close()
        env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "REDIS_URL": REDIS_URL,
            "ARQ_QUEUE_NAME": queue,
            "SUPABASE_URL": url,
            "SUPABASE_SERVICE_ROLE_KEY": LOCAL_SERVICE_ROLE_KEY,
            "WHATSAPP_API_BASE_URL": f"{url}/whatsapp/v21.0",
            "BRIDGE_LOG_LEVEL": "WARNING",
            "JOBS_MAX_JOBS": str(args.max_jobs),
            "JOBS_POLL_DELAY_SECONDS": str(args.poll_delay),
            "JOBS_SWEEP_AFTER_SECONDS": "3600",
        }
        children_before = _children_cpu()
        with cpu.Sampler() as sampler:
            procs = [
                await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "arq", "jobs.worker.WorkerSettings", "--burst", env=env
                )
                for _ in range(workers)
            ]
            await asyncio.gather(*(p.wait() for p in procs))
        cpu_spent = sampler.spent()
        # The workers have exited: their CPU is what the waited-for children used.
        cpu_spent["worker"] = _children_cpu() - children_before
        await asyncio.sleep(0.5)
        await client.close()
        report = await _measure(db, ws, started)
        report["cpu"] = cpu.per_item(cpu_spent, report["turns"], CPU_ROLES)
        await redis.delete(queue)
        await redis.aclose()
        await db.close()
        return report


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


async def _measure(db: asyncpg.Pool, ws: uuid.UUID, started: dict[str, float]) -> dict[str, Any]:
    rows = await db.fetch(
        """
        select c.id, extract(epoch from f.acquired_at) as locked,
               (select array_agg(extract(epoch from m.timestamp) order by m.timestamp)
                  from public.messages m where m.conversation_id = c.id
                   and m.direction = 'outbound' and m.status = 'sent') as sent_at,
               (select array_agg(m.content ->> 'body' order by m.timestamp)
                  from public.messages m where m.conversation_id = c.id
                   and m.direction = 'outbound') as replies,
               (select array_agg(m.content ->> 'body' order by m.timestamp, m.created_at, m.id)
                  from public.messages m where m.conversation_id = c.id
                   and m.direction = 'inbound') as inbound,
               (select bool_and(m.processed_by_agent) from public.messages m
                 where m.conversation_id = c.id and m.direction = 'inbound') as processed
          from public.conversations c
          join public.conversation_turn_fences f on f.conversation_id = c.id
         where c.workspace_id = $1
        """,
        ws,
    )
    overhead, violations, turns, first, last = [], 0, 0, float("inf"), 0.0
    for r in rows:
        replies = r["replies"] or []
        turns += len(replies)
        expected = "Recibido ({}): {}".format(len(r["inbound"]), " | ".join(r["inbound"]))
        if replies != [expected] or not r["processed"] or not r["sent_at"]:
            violations += 1
            continue
        sent = float(r["sent_at"][-1])
        overhead.append(sent - float(r["locked"]))
        first, last = min(first, float(r["locked"])), max(last, sent)
    locked = {str(r["id"]): float(r["locked"]) for r in rows}
    typing = [t - locked[c] for c, t in started.items() if c in locked]
    return {
        "conversations": len(rows),
        "turns": turns,
        "turns_per_s": turns / (last - first) if last > first else float("nan"),
        "overhead_p50_ms": percentile(overhead, 50) * 1000,
        "overhead_p99_ms": percentile(overhead, 99) * 1000,
        "typing_p99_ms": percentile(typing, 99) * 1000,
        "typing_n": len(typing),
        "violations": violations,
    }


async def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench turns")
    parser.add_argument("--conversations", type=int, default=1000)
    parser.add_argument("--workers", default="1,2")
    # The diagnostic engine is CPU-bound: turns beyond a few per worker only queue for the cores
    # (and lengthen arq's scan of running jobs), so the default is lower than JOBS_MAX_JOBS's.
    parser.add_argument("--max-jobs", type=int, default=5)
    parser.add_argument(
        "--history",
        type=int,
        default=20_000,
        help="past customers of another workspace written and analyzed first (bench.history)",
    )
    parser.add_argument("--poll-delay", type=float, default=0.01, help="arq poll delay, seconds")
    args = parser.parse_args(argv)
    print(
        "workers | conversations | turns | turns/s | overhead p50 | overhead p99 |"
        " typing START p99 | ordering violations | CPU ms per turn"
    )
    for workers in [int(w) for w in args.workers.split(",")]:
        r = await _run(args, workers)
        print(
            f"{workers} | {r['conversations']} | {r['turns']} | {r['turns_per_s']:.0f} |"
            f" {r['overhead_p50_ms']:.1f} ms | {r['overhead_p99_ms']:.1f} ms |"
            f" {r['typing_p99_ms']:.1f} ms (n={r['typing_n']}) | {r['violations']} |"
            f" {r['cpu']}"
        )
