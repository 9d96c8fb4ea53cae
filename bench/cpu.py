"""CPU time of the machine's processes by role, read from /proc, to say where a benchmark's
cycles went (per stored message: which part to make cheaper next).

A role is recognised from the command line; a process that starts and ends between two
snapshots is not seen, so the servers and their database connections must outlive the span."""

from __future__ import annotations

import os
import threading
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")

# First match wins. uvicorn's worker processes (multiprocessing's spawned children) take the
# role of the process that spawned them.
SPAWNED = "multiprocessing.spawn"
ROLES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("api", ("bridge.cli serve",)),
    ("ceiling", ("bench.ingest_ceiling",)),
    ("stand-in", ("-m devstack",)),
    ("worker", ("arq jobs.worker", "jobs.worker")),
    ("postgres", ("postgres",)),
    ("redis", ("redis-server",)),
    ("load", ("wrk", "-m bench")),
)


def _role(cmdline: str) -> str | None:
    for role, needles in ROLES:
        if any(n in cmdline for n in needles):
            return role
    return None


def snapshot() -> dict[int, tuple[str, float]]:
    """pid -> (role, CPU seconds so far) of every process with a known role."""
    processes: dict[int, tuple[str, int, float]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        cpu = (int(fields[11]) + int(fields[12])) / _TICKS
        processes[int(entry.name)] = (cmdline, int(fields[1]), cpu)
    seen: dict[int, tuple[str, float]] = {}
    for pid, (cmdline, parent, cpu) in processes.items():
        if SPAWNED in cmdline and parent in processes:
            cmdline = processes[parent][0]
        role = _role(cmdline)
        if role is not None:
            seen[pid] = (role, cpu)
    return seen


def spent(
    before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]]
) -> dict[str, float]:
    """CPU seconds per role between two snapshots (processes born in between count whole)."""
    total: dict[str, float] = {}
    for pid, (role, seconds) in after.items():
        total[role] = total.get(role, 0.0) + seconds - before.get(pid, (role, 0.0))[1]
    return total


def per_item(seconds: dict[str, float], items: int, roles: tuple[str, ...]) -> str:
    """`api 1.20 · stand-in 0.45 …` in ms of CPU per item, for the roles that spent any."""
    if items <= 0:
        return "-"
    parts = [f"{r} {seconds[r] / items * 1000:.2f}" for r in roles if seconds.get(r, 0.0) > 0]
    return " · ".join(parts) or "-"


class Sampler:
    """Snapshots every `interval` seconds in a thread, so processes that end before the last
    snapshot (a worker in burst mode, its database connections) still count, up to their last
    sample."""

    def __init__(self, interval: float = 0.2) -> None:
        self._interval = interval
        self._first: dict[int, tuple[str, float]] = {}
        self._last: dict[int, tuple[str, float]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while True:
            self._last.update(snapshot())
            if self._stop.wait(self._interval):
                return

    def __enter__(self) -> Sampler:
        self._first.update(snapshot())
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def spent(self) -> dict[str, float]:
        # A process missing from the first snapshot was born during the span: all of it counts.
        return spent(self._first, self._last)
