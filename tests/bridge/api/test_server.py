"""`bridge serve` as deployed: a real uvicorn process, its logs, the doorbell ringing Redis."""

from __future__ import annotations

import asyncio
import json
import os
import sys
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
from tests.fixtures.webhook import APP_SECRET, MakeChannel


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
