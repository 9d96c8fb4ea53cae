"""`make dev`'s scripts/dev.sh, run for real against a database of its own: it says where to go
with the ports it was given, its logs are readable lines with the routine ones quiet, a process
that dies is started again, and SIGINT (Ctrl-C) stops everything, leaving no process and no port
behind. The environment the test exports wins over the env file dev.sh sources (DEV_ENV_FILE, a
copy of .env.example: the repository's .env is neither written nor read here)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from redis.asyncio import Redis

from devstack import customer
from devstack.whatsapp.status_webhooks import signature
from jobs.health import health_key
from tests.fixtures.dev_session import ROOT, port_free, running_dev, session_processes, two_ports
from tests.fixtures.devstack import SERVICE_ROLE_KEY, wait_http
from tests.fixtures.postgres import RUN_ID, migrated_database
from tests.fixtures.worker import eventually

WORKER = "jobs.worker.WorkerSettings"


@pytest.fixture(scope="module")
async def dev_database() -> AsyncIterator[str]:
    async with migrated_database("devsh") as url:
        yield url


def worker_pids(sid: int) -> set[int]:
    """The arq worker itself: the Python process, not the `uv run` in front of it."""
    return {
        pid
        for pid, cmd in session_processes(sid).items()
        if WORKER in cmd and "python" in cmd.split(" ", 1)[0]
    }


def _uv() -> str:
    return shutil.which("uv") or "python3 -m uv"


def _env(database: str, redis_url: str, env_file: Path, **extra: str) -> dict[str, str]:
    shutil.copy(ROOT / ".env.example", env_file)
    env = {
        **os.environ,
        "UV": _uv(),
        "DEV_ENV_FILE": str(env_file),
        # These win over the env file's values (its database is `postgres`, its queue the
        # shared `arq:queue`).
        "DATABASE_URL": database,
        "REDIS_URL": redis_url,
        "ARQ_QUEUE_NAME": f"arq:queue:test-{RUN_ID}-dev-{uuid.uuid4().hex[:8]}",
        "SUPABASE_SERVICE_ROLE_KEY": SERVICE_ROLE_KEY,
        **extra,
    }
    # What dev.sh decides when the caller says nothing.
    for name in ("SUPABASE_URL", "WHATSAPP_API_BASE_URL", "BRIDGE_LOG_FORMAT", "NO_COLOR"):
        if name not in extra:
            env.pop(name, None)
    return env


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().partition("=")[::2] for item in raw if b"=" in item)


# What arq and uvicorn print for routine work: a job's start and end (the sweeper's every 10 s),
# the health record (every 10 s), uvicorn's start-up steps; and any JSON line.
ROUTINE_MARKS = ("cron:sweep", "recording health", " → ", " ← ", "Waiting for application", "{")


async def test_dev_says_where_to_go_keeps_routine_quiet_and_shows_a_webhook_as_a_line(
    dev_database: str, redis_url: str, tmp_path: Path
) -> None:
    devstack_port, bridge_port = two_ports()
    stand_in, api = f"http://127.0.0.1:{devstack_port}", f"http://127.0.0.1:{bridge_port}"
    # Only the ports: the stand-in's URLs (in the env file, on :54321) follow DEVSTACK_PORT.
    env = _env(
        dev_database,
        redis_url,
        tmp_path / "dev.env",
        DEVSTACK_PORT=str(devstack_port),
        BRIDGE_PORT=str(bridge_port),
    )
    log = tmp_path / "dev.log"

    def output() -> str:
        return log.read_text(errors="replace")

    async with running_dev(env, log) as dev:

        async def block_printed() -> bool:
            assert dev.returncode is None, output()
            return "Stop: Ctrl-C." in output()

        await eventually(block_printed, within=40)
        text = output()
        block = text[text.index("wa-agent-bridge, local stack") :]
        assert f"webhook API  {api} " in block
        assert f"stand-in     {stand_in} " in block
        assert f"devstack.customer --bridge-url {api} 'hola, cuánto cuesta?'" in block
        assert f"curl -s '{stand_in}/whatsapp/_control/requests?kind=send'" in block
        async with httpx.AsyncClient() as client:
            inbox_served = (await client.get(f"{stand_in}/inbox/")).is_success
        assert (f"inbox page   {stand_in}/inbox/" in block) == inbox_served

        servers = [
            pid
            for pid, cmd in session_processes(dev.pid).items()
            if "python" in cmd.split(" ", 1)[0] and ("bridge serve" in cmd or WORKER in cmd)
        ]
        assert servers
        for pid in servers:
            environ = _environ(pid)
            assert environ["SUPABASE_URL"] == stand_in
            assert environ["WHATSAPP_API_BASE_URL"] == f"{stand_in}/whatsapp/v21.0"
            assert environ["BRIDGE_LOG_FORMAT"] == "pretty"

        # Idle: the sweeper runs and the worker records its health every 10 s, in silence.
        async def worker_healthy() -> bool:
            client = Redis.from_url(redis_url)
            try:
                return bool(await client.exists(health_key(env["ARQ_QUEUE_NAME"])))
            finally:
                await client.aclose()

        await eventually(worker_healthy, within=20)
        idle_from = len(output())
        await asyncio.sleep(12)
        idle = output()[idle_from:]
        assert await worker_healthy()
        assert not [line for line in idle.splitlines() if any(m in line for m in ROUTINE_MARKS)]

        # A customer writes: the stored message is one readable line of the API's.
        wamid = f"wamid.DEVSH{uuid.uuid4().hex}"
        raw = customer.webhook_body(
            "hola", phone_number_id="1000000000000001", sender="573001234567", name="C", wamid=wamid
        )
        body = json.dumps(raw).encode()
        secret = env.get("WHATSAPP_APP_SECRET", "local-dev-app-secret")
        async with httpx.AsyncClient() as client:
            answer = await client.post(
                f"{api}/webhooks/whatsapp",
                content=body,
                headers={
                    "content-type": "application/json",
                    "x-hub-signature-256": signature(body, secret),
                },
            )
        assert answer.status_code == 200, answer.text

        async def stored_line() -> bool:
            return f"wamid={wamid}" in output()

        await eventually(stored_line, within=10)
        (line,) = [line for line in output().splitlines() if f"wamid={wamid}" in line]
        assert " INFO  api      bridge.message.stored " in line
        assert "conversation_id=" in line
        assert "{" not in line
        assert "\x1b[" not in output()  # not a terminal: no colours


async def test_dev_restarts_a_dead_worker_and_ctrl_c_stops_everything(
    dev_database: str, redis_url: str, tmp_path: Path
) -> None:
    devstack_port, bridge_port = two_ports()
    devstack = f"http://127.0.0.1:{devstack_port}"
    env = _env(
        dev_database,
        redis_url,
        tmp_path / "dev.env",
        DEVSTACK_PORT=str(devstack_port),
        BRIDGE_PORT=str(bridge_port),
        SUPABASE_URL=devstack,
        WHATSAPP_API_BASE_URL=f"{devstack}/whatsapp/v21.0",
    )
    async with running_dev(env, tmp_path / "dev.log") as dev:
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
