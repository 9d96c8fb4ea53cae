"""`bridge serve` as deployed: a real uvicorn process, its logs, the doorbell ringing Redis, and
the connections it will not keep."""

from __future__ import annotations

import asyncio
import json
import os
import resource
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import httpx
from redis.asyncio import Redis

from bridge.api.signature import sign
from bridge.queue import inbound_job_id
from tests.factories import whatsapp as wa
from tests.fixtures.devstack import free_port, stop_process, wait_http
from tests.fixtures.metrics import scrape, value
from tests.fixtures.webhook import APP_SECRET, VERIFY_TOKEN, MakeChannel


@asynccontextmanager
async def _serving(
    tmp_path: Path, env: dict[str, str], *flags: str
) -> AsyncIterator[tuple[str, Callable[[], str]]]:
    port = free_port()
    log_path = tmp_path / f"bridge-{port}.log"
    with log_path.open("wb") as log:
        proc = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "bridge.cli", "serve", "--port", str(port), *flags),
            env={**os.environ, **env},
            stdout=log,
            stderr=log,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            try:
                await wait_http(f"{base}/healthz")
            except TimeoutError:
                raise AssertionError(
                    f"bridge serve did not start: {log_path.read_text()}"
                ) from None
            yield base, log_path.read_text
        finally:
            await stop_process(proc)


async def _post(base: str, payload: object) -> httpx.Response:
    body = json.dumps(payload).encode()
    headers = {"content-type": "application/json", "X-Hub-Signature-256": sign(body, APP_SECRET)}
    async with httpx.AsyncClient() as client:
        return await client.post(f"{base}/webhooks/whatsapp", content=body, headers=headers)


def _env(devstack_url: str, redis_url: str, queue_name: str) -> dict[str, str]:
    return {
        "SUPABASE_URL": devstack_url,
        "REDIS_URL": redis_url,
        "ARQ_QUEUE_NAME": queue_name,
        "WHATSAPP_APP_SECRET": APP_SECRET,
        "BRIDGE_LOG_LEVEL": "INFO",
    }


async def test_served_webhook_stores_rings_and_logs_json_without_access_lines(
    tmp_path: Path,
    devstack_url: str,
    redis_url: str,
    queue_name: str,
    make_channel: MakeChannel,
    db: asyncpg.Pool,
) -> None:
    channel = await make_channel()
    msg = wa.text("hola", sender=wa.customer_phone())
    env = _env(devstack_url, redis_url, queue_name)
    async with _serving(tmp_path, env) as (base, read_log):
        response = await _post(base, wa.body(wa.change(channel.phone_number_id, messages=[msg])))
        assert response.status_code == 200, response.text
        message_id = await db.fetchval("select id from public.messages where wamid = $1", msg["id"])
        assert message_id is not None
        redis = Redis.from_url(redis_url)
        try:
            key = f"arq:job:{inbound_job_id(str(message_id))}"
            for _ in range(100):  # the doorbell rings after the answer
                if await redis.exists(key):
                    break
                await asyncio.sleep(0.05)
            assert await redis.exists(key)
            await redis.delete(key)
            await redis.zrem(queue_name, inbound_job_id(str(message_id)))
        finally:
            await redis.aclose()
        await asyncio.sleep(0.2)
        lines = read_log().splitlines()
    events = [json.loads(line) for line in lines if line.startswith("{")]
    stored = [e for e in events if e["event"] == "bridge.message.stored"]
    assert [e["wamid"] for e in stored] == [msg["id"]]
    assert stored[0]["correlation_id"]
    assert not any("POST /webhooks/whatsapp" in line for line in lines)


async def test_access_log_is_there_when_asked_for(
    tmp_path: Path, devstack_url: str, redis_url: str, queue_name: str
) -> None:
    env = _env(devstack_url, redis_url, queue_name)
    async with _serving(tmp_path, env, "--access-log") as (base, read_log):
        async with httpx.AsyncClient() as client:
            assert (await client.get(f"{base}/readyz")).status_code == 200
        await asyncio.sleep(0.2)
        log = read_log()
    assert "GET /readyz" in log


async def test_access_log_never_carries_the_verify_token(
    tmp_path: Path, devstack_url: str, redis_url: str, queue_name: str
) -> None:
    env = {**_env(devstack_url, redis_url, queue_name), "WHATSAPP_VERIFY_TOKEN": VERIFY_TOKEN}
    params = {"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "8151"}
    wrong = {**params, "hub.verify_token": "a-guess-that-is-someone-else's-token"}
    async with _serving(tmp_path, env, "--access-log") as (base, read_log):
        async with httpx.AsyncClient() as client:
            ok = await client.get(f"{base}/webhooks/whatsapp", params=params)
            assert (ok.status_code, ok.text) == (200, "8151")
            refused = await client.get(f"{base}/webhooks/whatsapp", params=wrong)
            assert refused.status_code == 403
        await asyncio.sleep(0.2)
        log = read_log()
    assert "GET /webhooks/whatsapp?hub.mode=<redacted>&hub.verify_token=<redacted>" in log
    assert VERIFY_TOKEN not in log
    assert "a-guess" not in log


def _fd_headroom(needed: int) -> None:
    """Raise this process's open-file limit (the server inherits it) to cover the test's
    sockets, or fail saying why."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    assert soft >= needed, f"ulimit -n is {soft}; this test holds {needed} descriptors"


async def _trickle(writer: asyncio.StreamWriter, data: bytes, every: float) -> None:
    """A slowloris: a request's head one byte at a time, never finished."""
    try:
        while True:
            for byte in data:
                writer.write(bytes([byte]))
                await writer.drain()
                await asyncio.sleep(every)
    except (ConnectionError, OSError):
        return


async def _closed_by_server(reader: asyncio.StreamReader, within: float) -> bool:
    try:
        while True:
            async with asyncio.timeout(within):
                chunk = await reader.read(65536)
            if not chunk:
                return True
    except TimeoutError:
        return False
    except (ConnectionError, OSError):
        return True


async def test_idle_and_slow_connections_do_not_keep_signed_deliveries_out(
    tmp_path: Path,
    devstack_url: str,
    redis_url: str,
    queue_name: str,
    make_channel: MakeChannel,
) -> None:
    idle_count, slow_count = 500, 6
    _fd_headroom(2 * (idle_count + slow_count) + 200)
    header_timeout = 4.0
    channel = await make_channel()
    env = {
        **_env(devstack_url, redis_url, queue_name),
        "BRIDGE_HEADER_TIMEOUT_SECONDS": str(header_timeout),
        "BRIDGE_LOG_LEVEL": "WARNING",
    }
    # As deployed: `bridge serve` with its default --limit-concurrency (200).
    async with _serving(tmp_path, env) as (base, _):
        port = int(base.rsplit(":", 1)[1])
        opened_at = time.monotonic()
        idle = [await asyncio.open_connection("127.0.0.1", port) for _ in range(idle_count)]
        slow = [await asyncio.open_connection("127.0.0.1", port) for _ in range(slow_count)]
        # Half of the slow ones first complete a request: the deadline holds between requests too.
        for _, writer in slow[::2]:
            writer.write(b"GET /healthz HTTP/1.1\r\nhost: bridge\r\n\r\n")
        trickles = [
            asyncio.create_task(
                _trickle(w, b"POST /webhooks/whatsapp HTTP/1.1\r\nhost: bridge\r\n", 0.05)
            )
            for _, w in slow
        ]
        try:
            await asyncio.sleep(0.3)  # every connection accepted and sitting in the server
            async with httpx.AsyncClient(timeout=5) as client:
                for _ in range(5):
                    msg = wa.text("hola", sender=wa.customer_phone())
                    body = json.dumps(
                        wa.body(wa.change(channel.phone_number_id, messages=[msg]))
                    ).encode()
                    started = time.monotonic()
                    response = await client.post(
                        f"{base}/webhooks/whatsapp",
                        content=body,
                        headers={
                            "content-type": "application/json",
                            "X-Hub-Signature-256": sign(body, APP_SECRET),
                        },
                    )
                    took = time.monotonic() - started
                    assert response.status_code == 200, response.text
                    assert took < 1.0, took
            # All of that happened while the idle and slow connections were still held.
            assert time.monotonic() - opened_at < header_timeout
            # And the server lets none of them hold a socket past the header deadline.
            closed = await asyncio.gather(
                *(_closed_by_server(reader, header_timeout + 3) for reader, _ in (*idle, *slow))
            )
            assert all(closed), f"{closed.count(False)} connections still open"
        finally:
            for task in trickles:
                task.cancel()
            for _, writer in (*idle, *slow):
                writer.close()


async def test_a_body_that_never_finishes_gets_408(
    tmp_path: Path, devstack_url: str, redis_url: str, queue_name: str
) -> None:
    env = {**_env(devstack_url, redis_url, queue_name), "BRIDGE_BODY_TIMEOUT_SECONDS": "1"}
    async with _serving(tmp_path, env) as (base, _):
        port = int(base.rsplit(":", 1)[1])
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(
                b"POST /webhooks/whatsapp HTTP/1.1\r\nhost: bridge\r\n"
                b'content-type: application/json\r\ncontent-length: 100\r\n\r\n{"obj'
            )
            await writer.drain()
            async with asyncio.timeout(5):
                status_line = await reader.readline()
        finally:
            writer.close()
    assert status_line.startswith(b"HTTP/1.1 408"), status_line


async def test_the_concurrency_limit_still_counts_requests_in_flight(
    tmp_path: Path, devstack_url: str, redis_url: str, queue_name: str
) -> None:
    env = {**_env(devstack_url, redis_url, queue_name), "BRIDGE_BODY_TIMEOUT_SECONDS": "5"}
    async with _serving(tmp_path, env, "--limit-concurrency", "2") as (base, _):
        port = int(base.rsplit(":", 1)[1])
        held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(2)]
        try:
            # Two requests whose bodies are still coming: both in flight.
            for _, writer in held:
                writer.write(
                    b"POST /webhooks/whatsapp HTTP/1.1\r\nhost: bridge\r\n"
                    b"content-length: 10\r\n\r\n{"
                )
                await writer.drain()
            await asyncio.sleep(0.3)
            async with httpx.AsyncClient() as client:
                third = await client.get(f"{base}/healthz")
            assert third.status_code == 503
        finally:
            for _, writer in held:
                writer.close()
        await asyncio.sleep(0.3)
        async with httpx.AsyncClient() as client:
            assert (await client.get(f"{base}/healthz")).status_code == 200


async def test_bridge_serve_refuses_to_start_on_blank_secrets(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "WHATSAPP_APP_SECRET": "   ",
        "WHATSAPP_360DIALOG_WEBHOOK_SECRET": "\t",
        "BRIDGE_INSECURE_DEV": "false",
    }
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "bridge.cli", "serve", "--port", str(port)),
        env=env,
        cwd=tmp_path,  # no .env file
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(20):
            _, stderr = await proc.communicate()
    finally:
        await stop_process(proc)
    assert proc.returncode == 2
    assert stderr.decode().startswith("bridge serve: WHATSAPP_APP_SECRET")


async def test_metrics_of_two_workers_are_summed_whichever_answers(
    tmp_path: Path,
    devstack_url: str,
    redis_url: str,
    queue_name: str,
    make_channel: MakeChannel,
) -> None:
    channel = await make_channel()
    temp = tmp_path / "temp"
    temp.mkdir()
    env = {**_env(devstack_url, redis_url, queue_name), "TMPDIR": str(temp)}
    sent = 12
    async with _serving(tmp_path, env, "--workers", "2") as (base, read_log):
        # A directory of this start's own holds the processes' values while it runs.
        [metrics_dir] = list(temp.glob("bridge-metrics-*"))
        for _ in range(200):  # both workers started: a file of counts each
            if len(list(metrics_dir.glob("counter_*.db"))) == 2:
                break
            await asyncio.sleep(0.05)

        async def post_one(i: int) -> int:
            msg = wa.text(f"m{i}", sender=wa.customer_phone())
            body = wa.body(wa.change(channel.phone_number_id, messages=[msg]))
            return (await _post(base, body)).status_code

        statuses = await asyncio.gather(*(post_one(i) for i in range(sent)))
        assert statuses == [200] * sent, read_log()
        async with httpx.AsyncClient() as client:
            refused = await client.post(f"{base}/webhooks/whatsapp", content=b"{}")
        assert refused.status_code == 401
        # Each scrape on a connection of its own: whichever worker answers sees every count.
        for _ in range(6):
            samples = await scrape(f"{base}/metrics")
            assert value(samples, "bridge_webhook_accepted_total", provider="meta") == sent
            assert value(samples, "bridge_messages_stored_total") == sent
            assert value(samples, "bridge_webhook_rejected_total", reason="missing_signature") == 1
            assert value(samples, "bridge_webhook_failed_batches_total") == 0
            duration = "bridge_webhook_duration_seconds"
            assert value(samples, f"{duration}_count", status="200") == sent
            assert value(samples, f"{duration}_bucket", status="200", le="+Inf") == sent
            assert value(samples, f"{duration}_bucket", status="401", le="+Inf") == 1
            assert value(samples, f"{duration}_bucket", status="200", le="0.005") is not None
        assert len(list(metrics_dir.glob("counter_*.db"))) == 2
    assert not metrics_dir.exists()  # removed when `bridge serve` stops
