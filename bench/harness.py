"""What the benchmarks share: a throwaway migrated database, the devstack process, percentiles."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import statistics
import sys
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx

from bench.history import add_history
from bridge import migrations

ADMIN_URL = os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def summary_ms(values: Sequence[float]) -> str:
    ms = [v * 1000 for v in values]
    return (
        f"p50 {percentile(ms, 50):.2f} ms, p99 {percentile(ms, 99):.2f} ms, "
        f"mean {statistics.fmean(ms):.2f} ms (n={len(ms)})"
    )


@asynccontextmanager
async def bench_database(*, history: int = 0) -> AsyncIterator[str]:
    """A throwaway database with the migrations and seed applied and, with `history`, that many
    past customers of another workspace, analyzed (`bench.history`)."""
    name = f"wab_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(ADMIN_URL)
    await admin.execute(f'create database "{name}"')
    url = urlunsplit(urlsplit(ADMIN_URL)._replace(path=f"/{name}"))
    try:
        await migrations.apply(url, seed=True)
        await add_history(url, history)
        yield url
    finally:
        await admin.execute(f'drop database if exists "{name}" with (force)')
        await admin.close()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _tail(log: Path, lines: int = 30) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


async def _stop(proc: asyncio.subprocess.Process) -> None:
    # The process leads its own group: uvicorn's worker processes go with their supervisor.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        await asyncio.wait_for(proc.wait(), timeout=15)
    except TimeoutError:
        pass
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    await proc.wait()


@asynccontextmanager
async def serving(
    args: Sequence[str],
    health_url: str,
    env: dict[str, str] | None = None,
    log: Path | None = None,
) -> AsyncIterator[None]:
    """Run a server until the block ends, once `health_url` answers 200. Its output goes to
    `log` when given (access logs would drown a report), whose tail is shown if it does not
    come up."""
    with contextlib.ExitStack() as files:
        out = files.enter_context(log.open("ab")) if log is not None else None
        proc = await asyncio.create_subprocess_exec(
            *args,
            env={**os.environ, **(env or {})},
            stdout=out,
            stderr=out,
            start_new_session=True,
        )

    def failed(what: str) -> RuntimeError:
        tail = f":\n{_tail(log)}" if log is not None else ""
        return RuntimeError(f"{' '.join(args[:4])} {what}{tail}")

    try:
        async with httpx.AsyncClient() as client:
            for _ in range(300):
                if proc.returncode is not None:
                    break
                with contextlib.suppress(httpx.TransportError):
                    if (await client.get(health_url)).status_code == 200:
                        break
                await asyncio.sleep(0.05)
            else:
                raise failed("did not come up")
        if proc.returncode is not None:
            raise failed(f"exited {proc.returncode}")
        yield
    finally:
        await _stop(proc)


@asynccontextmanager
async def devstack(database_url: str) -> AsyncIterator[str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    async with serving(
        [sys.executable, "-m", "devstack", "--port", str(port), "--database-url", database_url],
        f"{url}/health",
    ):
        yield url
