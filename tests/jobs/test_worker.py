"""The worker process as the README starts it (`arq jobs.worker.WorkerSettings`): its settings come
from the environment and from a `.env` file in its directory, the LLM engine's included, and
its job function takes exactly the job contract's arguments."""

from __future__ import annotations

import asyncio
import inspect
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp import web

from bridge.queue import TurnJob
from jobs.tasks import process_inbound
from tests.factories import whatsapp as wa
from tests.fixtures.devstack import free_port
from tests.fixtures.webhook import WebhookClient
from tests.fixtures.worker import WhatsAppRecorder, Worker, eventually, make_workspace
from tests.jobs.turns import say

DOTENV_KEY = "sk-ant-from-the-dotenv-file"


def test_the_job_function_takes_exactly_the_job_contracts_arguments() -> None:
    parameters = list(inspect.signature(process_inbound).parameters)
    assert parameters[0] == "ctx"
    assert parameters[1:] == list(TurnJob.for_message("c", "m", None).kwargs())


class MessagesApi:
    """Anthropic's Messages API as far as the engine uses it: one answer, and the API key each
    request carried."""

    def __init__(self) -> None:
        self.keys: list[str | None] = []

    async def messages(self, request: web.Request) -> web.Response:
        # The SDK sends the key as `x-api-key` or as a Bearer token, by version.
        bearer = request.headers.get("authorization", "").removeprefix("Bearer ")
        self.keys.append(request.headers.get("x-api-key") or bearer or None)
        answer = {
            "intent": "precio",
            "confidence": 90,
            "mode": "conversacion",
            "replies": ["Respuesta del modelo"],
            "data": {},
            "pack": None,
            "handoff": False,
            "handoff_reason": None,
        }
        return web.json_response(
            {
                "id": "msg_test",
                "type": "message",
                "role": "assistant",
                "model": "claude-haiku-4-5",
                "content": [{"type": "text", "text": json.dumps(answer)}],
                "stop_reason": "end_turn",
                "stop_sequence": None,
                "usage": {"input_tokens": 10, "output_tokens": 5},
            }
        )


@pytest.fixture
async def messages_api() -> AsyncIterator[tuple[MessagesApi, str]]:
    api = MessagesApi()
    app = web.Application()
    app.router.add_post("/v1/messages", api.messages)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield api, f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def test_an_llm_key_in_dotenv_reaches_the_engine(
    tmp_path: Path,
    turn_db: asyncpg.Pool,
    inbox: WebhookClient,
    worker: Worker,
    whatsapp: WhatsAppRecorder,
    messages_api: tuple[MessagesApi, str],
) -> None:
    pytest.importorskip("anthropic")  # the optional `llm` extra
    api, api_url = messages_api
    ws = await make_workspace(turn_db, agent_id="claude-sales-v1")
    phone = wa.customer_phone()
    await say(inbox, ws.phone_number_id, phone, "hola, cuánto cuesta?")
    # The key and the API's address only in the .env file of the worker's directory.
    (tmp_path / ".env").write_text(
        f"ANTHROPIC_API_KEY={DOTENV_KEY}\nBRIDGE_LLM_BASE_URL={api_url}\n"
    )
    env: dict[str, Any] = worker.env()
    for name in ("ANTHROPIC_API_KEY", "BRIDGE_LLM_BASE_URL"):
        env.pop(name, None)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "arq", "jobs.worker.WorkerSettings", "--burst", env=env, cwd=tmp_path
    )
    assert await asyncio.wait_for(proc.wait(), 60) == 0
    assert api.keys == [DOTENV_KEY]

    async def replied() -> bool:
        return await whatsapp.texts(phone) == ["Respuesta del modelo"]

    await eventually(replied)


async def test_turns_waiting_on_their_delays_cost_arq_no_polling_round_trips(
    turn_db: asyncpg.Pool,
    inbox: WebhookClient,
    worker: Worker,
    whatsapp: WhatsAppRecorder,
    redis_url: str,
) -> None:
    # arq's poll checks each due job id with WATCH and two reads, even a job it runs itself: a
    # running turn is set aside on the queue until it ends (`bridge.queue.JobQueue.set_aside`).
    from redis.asyncio import Redis

    ws = await make_workspace(turn_db, response_speed=1.0)
    phones = [wa.customer_phone() for _ in range(20)]
    for phone in phones:
        await say(inbox, ws.phone_number_id, phone, "hola #delay=1500")
    redis = Redis.from_url(redis_url)
    try:
        before = await _watch_calls(redis)
        proc = await worker.start()
        try:

            async def all_replied() -> bool:
                return all([await whatsapp.texts(p) for p in phones])

            await eventually(all_replied, within=30)
        finally:
            proc.terminate()
            await asyncio.wait_for(proc.wait(), 20)
        watches = await _watch_calls(redis) - before
    finally:
        await redis.aclose()
    # One claim per job (each message's, and the crons'); without setting them aside, each of
    # the ~75 polls while the replies waited would have checked all 20 again.
    assert watches < 100, watches


async def _watch_calls(redis: Any) -> int:
    stats = await redis.info("commandstats")
    return int(stats.get("cmdstat_watch", {}).get("calls", 0))
