"""A short chaos soak (`python -m bench soak`) on every test run: the full stack (2 API workers, 2
arq workers, its own Postgres and Redis, the stand-ins) under customers and a fault every few
seconds — kills of the API and of workers mid-send, Postgres and Redis restarts, WhatsApp 5xx,
timeouts and throttles — and then the invariant table, whose must-be-zero rows must all be zero
(the soak's exit status), and no process of its stack left behind. The long soak is the README's
documented command."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from pathlib import Path

from tests.fixtures.worker import eventually

ROOT = Path(__file__).resolve().parents[2]
# Every process of the soak's stack has it in its environment (bench/soak.py `_env`).
SOAK_MARK = b"ARQ_QUEUE_NAME=arq:queue:soak\0"


def soak_processes() -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if SOAK_MARK in (entry / "environ").read_bytes():
                    found.append((entry / "cmdline").read_bytes().replace(b"\0", b" ").decode())
    return found


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

    async def none_left() -> bool:
        return not soak_processes()

    try:
        await eventually(none_left, within=5)
    except AssertionError:
        raise AssertionError(f"left running: {soak_processes()}") from None
