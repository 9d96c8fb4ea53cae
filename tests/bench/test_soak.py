"""A short chaos soak (`python -m bench soak`) on every test run: the full stack (2 API workers, 2
arq workers, its own Postgres and Redis, the stand-ins) under customers and a fault every few
seconds — kills of the API and of workers mid-send, Postgres and Redis restarts, WhatsApp 5xx,
timeouts and throttles — and then the invariant table, whose must-be-zero rows must all be zero
(the soak's exit status). The long soak is the README's documented command."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


async def test_a_short_chaos_soak_keeps_every_promise() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench",
        "soak",
        *("--seconds", "50", "--customers", "80", "--rate", "10", "--fault-every", "4"),
        *("--seed", "5", "--drain-seconds", "90"),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(proc.communicate(), 300)
    text = output.decode(errors="replace")
    table = "\n".join(line for line in text.splitlines() if not line.startswith("{"))
    assert proc.returncode == 0, table[-6000:]
    assert "must be 0) | 0 |" in table
