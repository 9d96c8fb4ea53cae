"""A newcomer's first minutes, for real: from a fresh copy of the repository (what a clone holds:
no virtualenv, no node_modules, no .env), `make dev` installs what it needs, migrates and seeds an
empty database and says where to go within a minute; `bridge demo` plays its conversation
against that stack and exits 0; Ctrl-C in the terminal (SIGINT to the foreground process group)
leaves no process and no port behind."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.fixtures.dev_session import ROOT, port_free, session_processes, two_ports
from tests.fixtures.devstack import SERVICE_ROLE_KEY
from tests.fixtures.postgres import RUN_ID, create_database, drop_database
from tests.fixtures.worker import eventually

READY_WITHIN = 60.0


def fresh_copy(into: Path) -> Path:
    """The files a clone of this checkout holds: tracked ones and new ones not ignored."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    ).stdout.split(b"\0")
    for name in filter(None, listed):
        source = ROOT / name.decode()
        if source.is_file():
            target = into / name.decode()
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return into


@pytest.fixture
async def empty_database() -> AsyncIterator[str]:
    name = f"wab_test_{RUN_ID}_fresh"
    url = await create_database(name)
    try:
        yield url
    finally:
        await drop_database(name)


@pytest.mark.timeout(300)
async def test_a_fresh_clone_runs_make_dev_then_the_demo_and_ctrl_c_leaves_nothing(
    empty_database: str, redis_url: str, tmp_path: Path
) -> None:
    clone = fresh_copy(tmp_path / "wa-agent-bridge")
    assert not (clone / ".venv").exists()
    assert not (clone / ".env").exists()
    devstack_port, bridge_port = two_ports()
    devstack = f"http://127.0.0.1:{devstack_port}"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "UV_"))},
        # The newcomer's own settings: an empty database, ports of their choosing, a queue of
        # their own on the shared Redis. Everything else comes from the .env dev.sh writes.
        "DATABASE_URL": empty_database,
        "REDIS_URL": redis_url,
        "ARQ_QUEUE_NAME": f"arq:queue:test-{RUN_ID}-fresh-{uuid.uuid4().hex[:8]}",
        "DEVSTACK_PORT": str(devstack_port),
        "BRIDGE_PORT": str(bridge_port),
        "NO_COLOR": "1",
    }
    for name in ("SUPABASE_URL", "WHATSAPP_API_BASE_URL", "BRIDGE_LOG_FORMAT", "PYTHONPATH"):
        env.pop(name, None)
    # Not this checkout's virtualenv (`uv run` puts it first): the clone makes its own.
    env["PATH"] = os.pathsep.join(
        entry for entry in env["PATH"].split(os.pathsep) if not entry.startswith(str(ROOT))
    )
    log = tmp_path / "make-dev.log"
    started = time.monotonic()
    with log.open("wb") as out:
        make = await asyncio.create_subprocess_exec(
            "make", "dev", cwd=clone, env=env, stdout=out, stderr=out, start_new_session=True
        )
    try:

        async def says_where_to_go() -> bool:
            assert make.returncode is None, log.read_text(errors="replace")[-3000:]
            return "Stop: Ctrl-C." in log.read_text(errors="replace")

        await eventually(says_where_to_go, within=READY_WITHIN + 30)
        ready_after = time.monotonic() - started
        text = log.read_text(errors="replace")
        assert ready_after < READY_WITHIN, f"ready after {ready_after:.0f}s:\n{text[-3000:]}"
        assert f"inbox page   {devstack}/inbox/" in text, text[-3000:]
        assert (clone / ".env").exists()

        demo = await asyncio.create_subprocess_exec(
            str(clone / ".venv" / "bin" / "bridge"),
            "demo",
            "--bridge-url",
            f"http://127.0.0.1:{bridge_port}",
            cwd=clone,
            env={
                **env,
                "SUPABASE_URL": devstack,
                "SUPABASE_SERVICE_ROLE_KEY": SERVICE_ROLE_KEY,
            },
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        shown, _ = await asyncio.wait_for(demo.communicate(), 150)
        assert demo.returncode == 0, shown.decode(errors="replace")

        assert len(session_processes(make.pid)) > 4
        # What the terminal does on Ctrl-C: SIGINT to its foreground process group.
        os.killpg(make.pid, signal.SIGINT)
        await asyncio.wait_for(make.wait(), 25)

        async def all_gone() -> bool:
            return not session_processes(make.pid)

        await eventually(all_gone, within=5)
        assert port_free(devstack_port)
        assert port_free(bridge_port)
    finally:
        for pid in session_processes(make.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if make.returncode is None:
            await make.wait()
