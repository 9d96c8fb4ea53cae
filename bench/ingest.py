"""Webhook intake under load: signed POSTs from a load generator on loopback against
`bridge serve` (1 and 2 uvicorn workers), with the Supabase stand-in, Postgres and Redis on the
same machine, and a bare FastAPI + asyncpg endpoint doing the single insert as the ceiling.

    uv run python -m bench ingest [--seconds 15] [--connections 32] [--rate 300] \\
        [--workers 1,2] [--skip-ceiling] [--bodies 100000] [--customers 1000] [--logs DIR]

Every POST is one text message with a wamid never sent before, signed with the app secret the
bridge is started with. Rows of the table:

- scenario `bridge`: `bridge serve --workers N` → supabase-py → `python -m devstack` (PostgREST
  stand-in) → `public.ingest_whatsapp_webhook`; arq jobs go to Redis after the 200.
  `ceiling`: `uvicorn bench.ingest_ceiling:app --workers N`, no signature check, one asyncpg
  insert.
- load `paced R/s`: an open-loop generator sends R POSTs/s on a fixed schedule over at most C
  keep-alive connections; p50/p99 are the ack latency measured from each request's scheduled
  time (coordinated omission included), `sent/s` is the rate actually written (below R when the
  server holds every connection) and a note is printed if the generator itself lagged.
- load `wrk C conn`: wrk keeps C connections busy (closed loop) for the maximum sustained rate;
  p50/p99 are wrk's latencies at that saturation.
- `stored/s` counts rows in public.messages of the bench workspace, before and after the run,
  over its duration; `errors` lists non-200 answers and socket errors.

Needs Postgres (BENCH_DATABASE_URL, a throwaway database is created and dropped), Redis
(BENCH_REDIS_URL, default redis://127.0.0.1:6379/15: only the run's own queue and job keys are
written, and deleted at the end) and wrk (installed from Debian's packages when root).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import tempfile
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from redis.exceptions import RedisError

from bench import cpu
from bench.harness import bench_database, free_port, percentile, serving
from bench.ingest_bodies import BodyFactory, write_for_wrk
from bench.ingest_paced import paced
from bench.ingest_setup import (
    Tenant,
    check_redis,
    drop_queue,
    make_tenant,
    stored_messages,
)
from bench.ingest_wrk import ensure_wrk, run_wrk
from bridge.settings import LOCAL_SERVICE_ROLE_KEY

REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/15")
APP_SECRET = "bench-app-secret"
PATH = "/webhooks/whatsapp"
# Whose CPU the table reports per stored message (wrk, a short-lived process, is not seen).
CPU_ROLES = ("api", "ceiling", "stand-in", "postgres", "redis", "load")


@dataclass(frozen=True)
class Row:
    scenario: str
    workers: int
    load: str
    sent_per_s: float
    stored_per_s: float
    p50_ms: float
    p99_ms: float
    errors: str
    cpu: str  # ms of CPU per stored message, by process role


@dataclass(frozen=True)
class Context:
    args: argparse.Namespace
    wrk: str
    database_url: str
    tenant: Tenant
    bodies: BodyFactory
    tmp: Path
    logs: Path
    # Filled as the runs finish: an interrupted run still reports what it measured.
    rows: list[Row] = field(default_factory=list)


def _errors(statuses: Mapping[int, int], socket_errors: Mapping[str, int]) -> str:
    bad = {str(code): n for code, n in sorted(statuses.items()) if code != 200}
    bad.update(socket_errors)
    return " ".join(f"{k}:{n}" for k, n in bad.items()) or "0"


async def _paced_row(ctx: Context, scenario: str, workers: int, url: str) -> Row:
    rate = ctx.args.rate
    bodies = ctx.bodies.make(round(rate * ctx.args.seconds))
    before = await stored_messages(ctx.database_url, ctx.tenant)
    cpu_before = cpu.snapshot()
    result = await paced(url, bodies, rate, max_connections=ctx.args.connections)
    cpu_spent = cpu.spent(cpu_before, cpu.snapshot())
    stored = await stored_messages(ctx.database_url, ctx.tenant) - before
    ms = [v * 1000 for v in result.latencies]
    if result.max_generator_lag > 0.02:
        lag = result.max_generator_lag * 1000
        print(f"  note: the generator itself fell up to {lag:.0f} ms behind its schedule")
    return Row(
        scenario,
        workers,
        f"paced {rate:g}/s",
        result.sent_per_s,
        stored / result.seconds,
        percentile(ms, 50),
        percentile(ms, 99),
        _errors(result.statuses, result.socket_errors),
        cpu.per_item(cpu_spent, stored, CPU_ROLES),
    )


async def _wrk_row(ctx: Context, scenario: str, workers: int, url: str) -> Row:
    file = ctx.tmp / f"bodies-{uuid.uuid4().hex[:8]}.txt"
    write_for_wrk(ctx.bodies.stream(ctx.args.bodies), file)
    before = await stored_messages(ctx.database_url, ctx.tenant)
    cpu_before = cpu.snapshot()
    result = await run_wrk(
        ctx.wrk, url, file, seconds=ctx.args.seconds, connections=ctx.args.connections
    )
    cpu_spent = cpu.spent(cpu_before, cpu.snapshot())
    file.unlink()
    await asyncio.sleep(1)  # the requests wrk abandoned at its deadline commit or fail
    stored = await stored_messages(ctx.database_url, ctx.tenant) - before
    return Row(
        scenario,
        workers,
        f"wrk {ctx.args.connections} conn",
        result.requests / result.seconds,
        stored / result.seconds,
        result.p50_ms,
        result.p99_ms,
        _errors(result.statuses, result.socket_errors),
        cpu.per_item(cpu_spent, stored, CPU_ROLES),
    )


async def _measure(ctx: Context, scenario: str, workers: int, url: str) -> None:
    # Warm-up: every worker's first requests pay for imports, pools and the Redis connection.
    await paced(
        url,
        ctx.bodies.make(round(ctx.args.rate)),
        ctx.args.rate,
        max_connections=ctx.args.connections,
    )
    await asyncio.sleep(0.5)
    ctx.rows.append(await _paced_row(ctx, scenario, workers, url))
    _progress(ctx.rows[-1])
    await asyncio.sleep(1)
    ctx.rows.append(await _wrk_row(ctx, scenario, workers, url))
    _progress(ctx.rows[-1])


def _progress(row: Row) -> None:
    print(
        f"  {row.scenario} x{row.workers} {row.load}: {row.stored_per_s:,.0f} stored/s, "
        f"p99 {row.p99_ms:.1f} ms, errors {row.errors}",
        flush=True,
    )


async def _run_bridge(ctx: Context, queue_name: str) -> None:
    port = free_port()
    stack_url = f"http://127.0.0.1:{port}"
    devstack = [
        sys.executable,
        "-m",
        "devstack",
        "--port",
        str(port),
        "--db-pool",
        str(ctx.args.db_pool),
    ]
    async with serving(
        [*devstack, "--database-url", ctx.database_url],
        f"{stack_url}/health",
        {},
        ctx.logs / "devstack.log",
    ):
        env = {
            "SUPABASE_URL": stack_url,
            "SUPABASE_SERVICE_ROLE_KEY": LOCAL_SERVICE_ROLE_KEY,
            "REDIS_URL": REDIS_URL,
            "ARQ_QUEUE_NAME": queue_name,
            "WHATSAPP_APP_SECRET": APP_SECRET,
            "BRIDGE_LOG_LEVEL": "WARNING",
        }
        for workers in ctx.args.workers:
            port = free_port()
            base = f"http://127.0.0.1:{port}"
            serve = [sys.executable, "-m", "bridge.cli", "serve", "--port", str(port)]
            async with serving(
                [*serve, "--workers", str(workers)],
                f"{base}/healthz",
                env,
                ctx.logs / f"bridge-{workers}.log",
            ):
                await _measure(ctx, "bridge", workers, base + PATH)


async def _run_ceiling(ctx: Context) -> None:
    env = {
        "BENCH_CEILING_DATABASE_URL": ctx.database_url,
        "BENCH_CEILING_WORKSPACE_ID": str(ctx.tenant.workspace_id),
        "BENCH_CEILING_CONVERSATION_ID": str(ctx.tenant.conversation_id),
    }
    for workers in ctx.args.workers:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        async with serving(
            [
                *(sys.executable, "-m", "uvicorn", "bench.ingest_ceiling:app"),
                *("--port", str(port), "--workers", str(workers)),
                # The same server as `bridge serve` (uvicorn's auto loop and HTTP parser), less
                # the per-request access log line.
                *("--no-access-log", "--log-level", "warning"),
            ],
            f"{base}/healthz",
            env,
            ctx.logs / f"ceiling-{workers}.log",
        ):
            await _measure(ctx, "ceiling", workers, base + PATH)


def _table(rows: list[Row]) -> str:
    head = (
        "scenario",
        "workers",
        "load",
        "sent/s",
        "stored/s",
        "p50 ms",
        "p99 ms",
        "errors",
        "CPU ms per stored msg",
    )
    cells = [head] + [
        (
            r.scenario,
            str(r.workers),
            r.load,
            f"{r.sent_per_s:,.0f}",
            f"{r.stored_per_s:,.0f}",
            f"{r.p50_ms:.1f}",
            f"{r.p99_ms:.1f}",
            r.errors,
            r.cpu,
        )
        for r in rows
    ]
    widths = [max(len(c[i]) for c in cells) for i in range(len(head))]
    lines = [" | ".join(c.ljust(w) for c, w in zip(cell, widths, strict=True)) for cell in cells]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench ingest")
    parser.add_argument("--seconds", type=float, default=15, help="length of each measured run")
    parser.add_argument(
        "--connections", type=int, default=32, help="wrk connections; cap of the paced run's"
    )
    parser.add_argument("--rate", type=float, default=300, help="POSTs/s of the paced run")
    parser.add_argument(
        "--workers",
        type=lambda s: [int(w) for w in s.split(",")],
        default=[1, 2],
        help="uvicorn worker counts to run, comma-separated",
    )
    parser.add_argument("--skip-ceiling", action="store_true")
    parser.add_argument(
        "--history",
        type=int,
        default=20_000,
        help="past customers of another workspace written and analyzed first (bench.history)",
    )
    parser.add_argument(
        "--bodies", type=int, default=100_000, help="distinct pre-signed bodies per wrk run"
    )
    parser.add_argument(
        "--customers", type=int, default=1000, help="distinct senders (conversations)"
    )
    parser.add_argument(
        "--db-pool",
        type=int,
        default=2 * (os.cpu_count() or 1) + 1,
        help="the stand-in's database connections (PostgREST's db-pool); default 2 x cores + 1",
    )
    parser.add_argument(
        "--logs", type=Path, default=None, help="keep the servers' output in this directory"
    )
    return parser


async def main(argv: list[str]) -> None:
    args = _parser().parse_args(argv)
    # SIGTERM stops the run like Ctrl-C does: the servers, wrk and the database are cleaned up.
    task = asyncio.current_task()
    if task is not None:
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    load = os.getloadavg()[0]
    wrk = await ensure_wrk()
    await check_redis(REDIS_URL)
    queue_name = f"arq:queue:bench-ingest-{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        async with bench_database(history=args.history) as database_url:
            tenant = await make_tenant(database_url)
            bodies = BodyFactory(tenant.phone_number_id, APP_SECRET, customers=args.customers)
            logs = args.logs or Path(tmp)
            logs.mkdir(parents=True, exist_ok=True)
            ctx = Context(args, wrk, database_url, tenant, bodies, Path(tmp), logs)
            try:
                await _run_bridge(ctx, queue_name)
                if not args.skip_ceiling:
                    await _run_ceiling(ctx)
            finally:
                try:
                    await drop_queue(REDIS_URL, queue_name, database_url, tenant)
                except (RedisError, OSError) as exc:
                    print(f"  warning: the keys of {queue_name} were not deleted: {exc}")
                if ctx.rows:
                    print(f"\n{_summary_header(args, load)}\n{_table(ctx.rows)}")


def _summary_header(args: argparse.Namespace, load: float) -> str:
    # The load average before the run tells whether something else was competing for the cores.
    return (
        f"ingest: {args.seconds:g} s per run, paced {args.rate:g}/s, wrk {args.connections} "
        f"connections, {args.customers} customers; {os.cpu_count()} cores, "
        f"load average {load:.2f} before the run"
    )
