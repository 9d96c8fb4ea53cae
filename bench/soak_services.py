"""The soak's own Postgres cluster, Redis server and supervised processes: its faults restart and
kill them, so none of them may be the machine's shared services."""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import asyncpg

from bench.harness import free_port


def _pg_bin() -> Path:
    """Debian's server binaries (scripts/services.sh installs them), newest major first."""
    if "BENCH_PG_BIN" in os.environ:
        return Path(os.environ["BENCH_PG_BIN"])
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if not found:
        raise RuntimeError("no PostgreSQL server binaries in /usr/lib/postgresql (BENCH_PG_BIN)")
    return found[-1].parent


PG_BIN = _pg_bin()


def _as_postgres() -> list[str]:
    # Postgres refuses to run as root: its tools run as the `postgres` user when we are root.
    return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


class PostgresCluster:
    """A throwaway cluster on a free port; `restart` is `pg_ctl restart -m fast|immediate`."""

    def __init__(self) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="wab_soak_pg_"))
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _ctl(self, *args: str) -> None:
        subprocess.run(
            [*_as_postgres(), str(PG_BIN / "pg_ctl"), "-D", str(self.dir / "data"), *args],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def start(self) -> None:
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            os.chown(self.dir, user.pw_uid, user.pw_gid)
        subprocess.run(
            [
                *_as_postgres(),
                str(PG_BIN / "initdb"),
                "-D",
                str(self.dir / "data"),
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        self.up()

    def up(self) -> None:
        # fsync off: a restart of Postgres (the fault) keeps the OS's page cache, so nothing
        # committed is lost; synchronous_commit stays on, as a commit acknowledged must survive
        # an immediate restart.
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.dir}"
            " -c max_connections=100 -c fsync=off"
        )
        self._ctl("-o", options, "-l", str(self.dir / "log"), "-w", "start")

    def down(self, mode: str) -> None:
        """Stop the server (`up` starts it again), keeping its data."""
        self._ctl("-m", mode, "-w", "stop")

    def restart(self, mode: str) -> None:
        self._ctl("-m", mode, "-w", "restart")

    def stop(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self._ctl("-m", "immediate", "-w", "stop")
        shutil.rmtree(self.dir, ignore_errors=True)

    async def wait_ready(self, within: float = 30) -> None:
        deadline = time.monotonic() + within
        while True:
            try:
                conn = await asyncpg.connect(self.url)
                await conn.close()
                return
            except (OSError, asyncpg.PostgresError):
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.1)


class RedisServer:
    """A Redis without persistence on a free port; `restart` kills it and starts it again."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self._proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(100):
            with contextlib.suppress(OSError):
                import socket

                with socket.create_connection(("127.0.0.1", self.port), timeout=0.1):
                    return
            time.sleep(0.05)
        raise RuntimeError("redis-server did not come up")

    def restart(self) -> None:
        self.stop()
        self.start()

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            self._proc = None


class Supervised:
    """A process kept running: when it exits (or is killed) it is started again after a second,
    as a production supervisor would. Counts its exits."""

    def __init__(self, name: str, argv: Sequence[str], env: dict[str, str], log: Path) -> None:
        self.name = name
        self._argv = list(argv)
        self._env = env
        self._log = log
        self.proc: asyncio.subprocess.Process | None = None
        self.exits = 0
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._keep())

    async def _spawn(self) -> asyncio.subprocess.Process:
        with self._log.open("ab") as out:
            return await asyncio.create_subprocess_exec(
                *self._argv, env=self._env, stdout=out, stderr=out, start_new_session=True
            )

    async def _keep(self) -> None:
        while not self._stopping:
            self.proc = await self._spawn()
            await self.proc.wait()
            if self._stopping:
                return
            self.exits += 1
            await asyncio.sleep(1)

    def kill(self) -> None:
        """SIGKILL the process and its group (uvicorn's workers go with it)."""
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)

    def pids(self) -> list[int]:
        if self.proc is None or self.proc.returncode is not None:
            return []
        return [self.proc.pid, *_children(self.proc.pid)]

    async def stop(self) -> None:
        self._stopping = True
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 15)
            except TimeoutError:
                self.kill()
                await self.proc.wait()
        if self._task is not None:
            await self._task


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            for child in (task / "children").read_text().split():
                found.append(int(child))
                found.extend(_children(int(child)))
    return found


def rss_mb(pid: int) -> float:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0
