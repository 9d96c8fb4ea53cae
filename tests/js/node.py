"""Running the node scripts of this directory (the frontend's own client, supabase-js) from the
Python tests: a runner that starts them and kills what is left, and readers of their output."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

JS_DIR = Path(__file__).resolve().parent
NODE = shutil.which("node")

# For `pytestmark` of the modules that run the scripts.
needs_node = [
    pytest.mark.skipif(NODE is None, reason="node is not installed"),
    pytest.mark.skipif(
        not (JS_DIR / "node_modules" / "@supabase" / "supabase-js").is_dir(),
        reason="tests/js/node_modules is missing: run `npm ci` in tests/js (make install does)",
    ),
]

Node = Callable[..., Awaitable[asyncio.subprocess.Process]]


@asynccontextmanager
async def node_runner() -> AsyncIterator[Node]:
    """`run(script, *args)` starts `node <script> <args>` here; whatever still runs at the end
    is killed."""
    started: list[asyncio.subprocess.Process] = []

    async def run(script: str, *args: str) -> asyncio.subprocess.Process:
        assert NODE is not None
        proc = await asyncio.create_subprocess_exec(
            NODE,
            str(JS_DIR / script),
            *args,
            cwd=JS_DIR,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        started.append(proc)
        return proc

    try:
        yield run
    finally:
        for proc in started:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


@pytest.fixture
async def node() -> AsyncIterator[Node]:
    """A runner of the supabase-js scripts under tests/js (a pytest plugin: tests/conftest.py)."""
    async with node_runner() as run:
        yield run


async def read_line(proc: asyncio.subprocess.Process, *, within: float = 15) -> str:
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), within)
    if not line:
        assert proc.stderr is not None
        stderr = (await proc.stderr.read()).decode()
        raise AssertionError(f"node exited ({await proc.wait()}): {stderr}")
    return line.decode().strip()


async def read_json(proc: asyncio.subprocess.Process, *, within: float = 15) -> Any:
    return json.loads(await read_line(proc, within=within))


async def assert_silent(proc: asyncio.subprocess.Process, *, within: float = 0.5) -> None:
    """Nothing more was printed, nor is within `within` seconds."""
    try:
        line = await read_line(proc, within=within)
    except TimeoutError:
        return
    raise AssertionError(f"node printed {line!r}")


async def finish(proc: asyncio.subprocess.Process) -> None:
    if proc.stdin is not None:
        proc.stdin.close()
    code = await asyncio.wait_for(proc.wait(), 15)
    assert proc.stderr is not None
    assert code == 0, (await proc.stderr.read()).decode()
