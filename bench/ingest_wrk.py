"""Closed-loop maximum throughput with Debian's `wrk`, replaying pre-signed bodies from a file."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
from dataclasses import dataclass
from pathlib import Path

# Each request takes the next `signature<TAB>body` line; response() tallies statuses per thread
# and done() prints one JSON line the benchmark parses (wrk's own summary is ignored).
LUA = r"""
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  sigs, bodies = {}, {}
  for line in io.lines(args[1]) do
    local tab = line:find("\t", 1, true)
    sigs[#sigs + 1] = line:sub(1, tab - 1)
    bodies[#bodies + 1] = line:sub(tab + 1)
  end
  n_bodies = #bodies
  n = 0
  statuses = {}
  headers = {["Content-Type"] = "application/json"}
end

function request()
  n = n + 1
  local i = (n - 1) % #bodies + 1
  headers["X-Hub-Signature-256"] = sigs[i]
  return wrk.format("POST", args_path, headers, bodies[i])
end

function response(status, hdrs, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local parts = {}
  for _, t in ipairs(threads) do
    for code, count in pairs(t:get("statuses")) do
      parts[#parts + 1] = string.format("[%d,%d]", code, count)
    end
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"duration_us":%d,"requests":%d,"bodies":%d,"p50_us":%d,"p99_us":%d,'
    .. '"connect":%d,"read":%d,"write":%d,"timeout":%d,"statuses":[%s]}\n',
    summary.duration, summary.requests, threads[1]:get("n_bodies"),
    latency:percentile(50), latency:percentile(99),
    e.connect, e.read, e.write, e.timeout, table.concat(parts, ",")))
end
"""


@dataclass(frozen=True)
class WrkResult:
    seconds: float
    requests: int
    statuses: dict[int, int]
    socket_errors: dict[str, int]
    p50_ms: float
    p99_ms: float


async def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() != 0:
        raise RuntimeError("wrk is not installed: run `sudo apt-get install -y wrk`, then retry")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for args in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "wrk"]):
        proc = await asyncio.create_subprocess_exec(
            *args, env=env, stdout=asyncio.subprocess.DEVNULL
        )
        if await proc.wait() != 0:
            raise RuntimeError(f"`{' '.join(args)}` failed; install wrk by hand")
    found = shutil.which("wrk")
    if not found:
        raise RuntimeError("wrk is still missing after apt-get install")
    return found


async def run_wrk(
    wrk: str, url: str, bodies_file: Path, *, seconds: float, connections: int
) -> WrkResult:
    script = bodies_file.with_suffix(".lua")
    path = "/" + url.split("/", 3)[3]
    # request() takes no arguments: the path is a global of the script.
    script.write_text(f"args_path = {json.dumps(path)}\n{LUA}")
    # One thread: it drives thousands of requests/s, and the second core belongs to the
    # servers under test.
    proc = await asyncio.create_subprocess_exec(
        wrk,
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "10s",
        "-s",
        str(script),
        url,
        "--",
        str(bodies_file),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        out, _ = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGKILL)
            await proc.wait()
    text = out.decode(errors="replace")
    line = next((ln for ln in text.splitlines() if ln.startswith("BENCH_JSON ")), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed (exit {proc.returncode}):\n{text[-2000:]}")
    data = json.loads(line.removeprefix("BENCH_JSON "))
    statuses: dict[int, int] = {}
    for code, count in data["statuses"]:
        statuses[code] = statuses.get(code, 0) + count
    # A replayed body repeats its wamid: acknowledged, not stored again.
    if data["requests"] > data["bodies"]:
        print(
            f"  warning: wrk sent {data['requests']} requests but had {data['bodies']} bodies; "
            "replayed wamids are duplicates (raise --bodies)"
        )
    return WrkResult(
        seconds=data["duration_us"] / 1e6,
        requests=data["requests"],
        statuses=statuses,
        socket_errors={k: data[k] for k in ("connect", "read", "write", "timeout") if data[k]},
        p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
    )
