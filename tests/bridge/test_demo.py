"""`bridge demo` against the real local stack: scripts/dev.sh (stand-in, API and a real arq worker)
on a migrated, seeded database of its own, the demo as a subprocess; then without a worker, and
without a stack at all."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from bridge.api.signature import is_valid
from bridge.demo.customer import sign, webhook_body
from bridge.demo.script import conversation, new_customer
from tests.fixtures.dev_session import running_dev, two_ports
from tests.fixtures.devstack import SERVICE_ROLE_KEY, free_port, start_devstack, stop_process
from tests.fixtures.devstack import wait_http as wait_for_http
from tests.fixtures.postgres import RUN_ID, migrated_database

ROOT = Path(__file__).resolve().parents[2]
APP_SECRET = "local-dev-app-secret"  # .env.example's, which the seed's channel accepts
STEP_TITLES = [step.title for step in conversation(new_customer())]


@pytest.fixture(scope="module")
async def demo_database() -> AsyncIterator[str]:
    async with migrated_database("demo") as url:  # the seed included: the demo workspace
        yield url


def _env(database: str, redis_url: str, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": database,
        "REDIS_URL": redis_url,
        "ARQ_QUEUE_NAME": f"arq:queue:test-{RUN_ID}-demo-{uuid.uuid4().hex[:8]}",
        "SUPABASE_SERVICE_ROLE_KEY": SERVICE_ROLE_KEY,
        "WHATSAPP_APP_SECRET": APP_SECRET,
        "JOBS_METRICS_PORT": "0",
        **extra,
    }


async def run_demo(env: dict[str, str], cwd: Path, *args: str) -> tuple[int, str]:
    """`bridge demo` as a subprocess (outside the repository: no .env of anyone's is read)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bridge.cli",
        "demo",
        *args,
        env=env,
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 90)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def test_the_demo_plays_every_step_against_make_devs_stack(
    demo_database: str, redis_url: str, tmp_path: Path
) -> None:
    devstack_port, bridge_port = two_ports()
    stand_in, api = f"http://127.0.0.1:{devstack_port}", f"http://127.0.0.1:{bridge_port}"
    env_file = tmp_path / "dev.env"
    env_file.write_text((ROOT / ".env.example").read_text())
    env = _env(
        demo_database,
        redis_url,
        UV=os.environ.get("UV", "python3 -m uv"),
        DEV_ENV_FILE=str(env_file),
        DEVSTACK_PORT=str(devstack_port),
        BRIDGE_PORT=str(bridge_port),
    )
    env.pop("SUPABASE_URL", None)  # dev.sh points it at its stand-in
    async with running_dev(env, tmp_path / "dev.log"):
        await wait_for_http(f"{api}/healthz", within=40)
        await wait_for_http(f"{stand_in}/health", within=10)
        # Supabase's API is all the demo uses: no database URL of its own.
        code, out = await run_demo(
            {**env, "SUPABASE_URL": stand_in, "DATABASE_URL": "postgresql://nobody@127.0.0.1:9/"},
            tmp_path,
            "--bridge-url",
            api,
            "--timeout",
            "20",
        )
    assert code == 0, out + (tmp_path / "dev.log").read_text(errors="replace")[-3000:]
    for number, title in enumerate(STEP_TITLES, 1):
        assert f"== step {number}/5: {title} ==" in out
    assert "\x1b[" not in out  # not a terminal: plain lines
    assert "customer → hola" in out
    assert "typing     bot is typing…" in out
    assert "typing     bot stopped typing" in out
    assert re.search(r"bot      ← .*Somnio.*\(\+\d+\.\d s\)", out)
    assert ": sent → delivered" in out
    assert "delivered → read" in out
    assert "task: Handoff: atender conversación de " in out
    assert re.search(r"assigned to \w+ Agent <\w+@demo-store\.test>", out)
    assert out.rstrip().endswith("all 5 steps observed")

    # What the demo claims is what the database holds.
    conversation_id = re.search(r"conversation ([0-9a-f-]{36})", out)
    assert conversation_id is not None
    conn = await asyncpg.connect(demo_database)
    try:
        cid = uuid.UUID(conversation_id.group(1))
        inbound = await conn.fetch(
            "select content ->> 'body' as body, agent_turn_id from messages"
            " where conversation_id = $1 and direction = 'inbound' order by received_seq",
            cid,
        )
        assert [r["body"] for r in inbound][:3] == ["hola", "¿cuánto cuesta?", "me interesa 🙌"]
        burst = {r["agent_turn_id"] for r in inbound[2:5]}
        assert len(inbound) == 7
        assert len(burst) == 1  # the burst: one turn
        assert None not in burst
        task = await conn.fetchrow(
            "select priority, assigned_to from tasks where conversation_id = $1", cid
        )
        assert task is not None
        assert task["priority"] == "high"
        assert task["assigned_to"] is not None
        bot_on = await conn.fetchval(
            "select agent_conversational from conversations where id = $1", cid
        )
        assert bot_on is False
    finally:
        await conn.close()


async def test_without_a_worker_the_demo_says_which_step_it_waited_for(
    demo_database: str, redis_url: str, tmp_path: Path
) -> None:
    bridge_port = free_port()
    api = f"http://127.0.0.1:{bridge_port}"
    stand_in_proc, stand_in = await start_devstack(
        demo_database, "--whatsapp-webhook-url", f"{api}/webhooks/whatsapp"
    )
    env = _env(
        demo_database,
        redis_url,
        SUPABASE_URL=stand_in,
        WHATSAPP_API_BASE_URL=f"{stand_in}/whatsapp/v21.0",
    )
    serve = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bridge.cli",
        "serve",
        "--port",
        str(bridge_port),
        env=env,
        cwd=tmp_path,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        await wait_for_http(f"{api}/healthz", within=20)
        started = asyncio.get_running_loop().time()
        code, out = await run_demo(env, tmp_path, "--bridge-url", api, "--timeout", "3")
        took = asyncio.get_running_loop().time() - started
    finally:
        await stop_process(serve)
        await stop_process(stand_in_proc)
    assert code == 1, out
    assert "customer → hola" in out
    assert "  stored   hola" in out  # the API stored it; nobody answered
    (failed,) = [line for line in out.splitlines() if "FAILED" in line]
    assert "step 1 (greeting) not observed: no reply within 3 s" in failed
    assert "is the worker running? (make dev runs it)" in failed
    assert took < 15


async def test_without_a_stack_the_demo_says_what_it_cannot_reach(tmp_path: Path) -> None:
    closed = free_port()
    env = {**os.environ, "WHATSAPP_APP_SECRET": APP_SECRET, "SUPABASE_URL": "http://127.0.0.1:1"}
    code, out = await run_demo(env, tmp_path, "--bridge-url", f"http://127.0.0.1:{closed}")
    assert code == 1
    assert f"cannot reach the webhook API at http://127.0.0.1:{closed}/healthz" in out
    assert "make dev" in out


async def test_bad_arguments_and_a_missing_app_secret_are_usage_errors(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "WHATSAPP_APP_SECRET"}
    assert (await run_demo(env, tmp_path, "--timeout", "0"))[0] == 2
    code, out = await run_demo(env, tmp_path)
    assert code == 2
    assert "WHATSAPP_APP_SECRET is not set" in out


def test_the_customers_webhooks_are_signed_as_the_api_verifies() -> None:
    customer = new_customer()
    body = json.dumps(
        webhook_body(
            [("wamid.A", "hola"), ("wamid.B", "¿cuánto cuesta?")],
            customer=customer,
            phone_number_id="1000000000000001",
            timestamp=1,
        )
    ).encode()
    assert is_valid(body, sign(body, APP_SECRET), APP_SECRET)
    assert not is_valid(body, sign(body, "another secret"), APP_SECRET)
    value = json.loads(body)["entry"][0]["changes"][0]["value"]
    assert [m["id"] for m in value["messages"]] == ["wamid.A", "wamid.B"]
    assert value["contacts"] == [{"profile": {"name": customer.name}, "wa_id": customer.phone}]
