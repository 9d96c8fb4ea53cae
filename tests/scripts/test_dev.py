"""`make dev`'s scripts/dev.sh, run for real against a database of its own: a process that dies
is started again, and SIGINT (Ctrl-C) stops everything, leaving no process and no port behind.
The environment the test exports wins over the env file dev.sh sources (DEV_ENV_FILE, a copy of
.env.example: the repository's .env is neither written nor read here)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from tests.fixtures.devstack import SERVICE_ROLE_KEY, free_port, wait_http
from tests.fixtures.postgres import RUN_ID, migrated_database
from tests.fixtures.worker import eventually

ROOT = Path(__file__).resolve().parents[2]
WORKER = "jobs.worker.WorkerSettings"


@pytest.fixture(scope="module")
async def dev_database() -> AsyncIterator[str]:
    async with migrated_database("devsh") as url:
        yield url


def _stat(pid: int) -> list[str]:
    """/proc/<pid>/stat's fields after the command name: state, ppid, pgrp, session, …"""
    text = Path(f"/proc/{pid}/stat").read_text()
    return text.rsplit(")", 1)[1].split()


def session_processes(sid: int) -> dict[int, str]:
    """Every live process of the session (orphans re-parented to init included), with its
    command line."""
    found: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError):
            fields = _stat(int(entry.name))
            if int(fields[3]) == sid and fields[0] != "Z":
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
                found[int(entry.name)] = cmdline.decode(errors="replace")
    return found


def worker_pids(sid: int) -> set[int]:
    """The arq worker itself: the Python process, not the `uv run` in front of it."""
    return {
        pid
        for pid, cmd in session_processes(sid).items()
        if WORKER in cmd and "python" in cmd.split(" ", 1)[0]
    }


def port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _uv() -> str:
    return shutil.which("uv") or "python3 -m uv"


async def test_dev_restarts_a_dead_worker_and_ctrl_c_stops_everything(
    dev_database: str, redis_url: str, tmp_path: Path
) -> None:
    had_dotenv = (ROOT / ".env").exists()
    devstack_port, bridge_port = free_port(), free_port()
    env_file = tmp_path / "dev.env"
    shutil.copy(ROOT / ".env.example", env_file)
    devstack = f"http://127.0.0.1:{devstack_port}"
    env = {
        **os.environ,
        "UV": _uv(),
        "DEV_ENV_FILE": str(env_file),
        # These win over the env file's values (its database is `postgres`, its queue the
        # shared `arq:queue`, its stand-in on :54321).
        "DATABASE_URL": dev_database,
        "REDIS_URL": redis_url,
        "ARQ_QUEUE_NAME": f"arq:queue:test-{RUN_ID}-dev-{uuid.uuid4().hex[:8]}",
        "DEVSTACK_PORT": str(devstack_port),
        "BRIDGE_PORT": str(bridge_port),
        "SUPABASE_URL": devstack,
        "SUPABASE_SERVICE_ROLE_KEY": SERVICE_ROLE_KEY,
        "WHATSAPP_API_BASE_URL": f"{devstack}/whatsapp/v21.0",
    }
    with (tmp_path / "dev.log").open("wb") as out:
        dev = await asyncio.create_subprocess_exec(
            "bash",
            str(ROOT / "scripts" / "dev.sh"),
            env=env,
            stdout=out,
            stderr=out,
            start_new_session=True,
        )
    try:
        await wait_http(f"http://127.0.0.1:{bridge_port}/healthz", within=30)
        # The stand-in connected to the exported database, not the env file's.
        conn = await asyncpg.connect(dev_database)
        try:
            name = dev_database.rsplit("/", 1)[1]
            connected = await conn.fetchval(
                "select count(*) from pg_stat_activity where datname = $1 and pid <> pg_backend_pid()",
                name,
            )
        finally:
            await conn.close()
        assert connected > 0

        async def one_worker() -> bool:
            return len(worker_pids(dev.pid)) == 1

        await eventually(one_worker, within=20)
        (first,) = worker_pids(dev.pid)
        os.kill(first, signal.SIGKILL)

        async def restarted() -> bool:
            assert dev.returncode is None, "dev.sh ended when its worker died"
            return bool(worker_pids(dev.pid) - {first})

        await eventually(restarted, within=15)
        log = (tmp_path / "dev.log").read_text(errors="replace")
        assert "dev: worker exited with code 137" in log

        before = session_processes(dev.pid)
        assert len(before) > 4  # dev.sh, three supervisors, the processes they run
        dev.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(dev.wait(), 25) == 130

        async def all_gone() -> bool:
            return not session_processes(dev.pid)

        await eventually(all_gone, within=5)
        assert port_free(devstack_port)
        assert port_free(bridge_port)
    finally:
        for pid in session_processes(dev.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if dev.returncode is None:
            await dev.wait()
    if not had_dotenv:
        assert not (ROOT / ".env").exists(), "dev.sh wrote a .env into the repository"
