"""`bridge doctor`: all ok against a migrated database, the stand-in and Redis (exit 0); each
problem named with its fix in plain words (exit 1), and no secret printed."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from pydantic import SecretStr

from bridge import migrations
from bridge.cli import _send_rule
from bridge.doctor import key_check, run
from bridge.doctor_report import Check
from bridge.settings import Settings
from tests.fixtures.devstack import ANON_KEY, SERVICE_ROLE_KEY, free_port

WORKSPACE = "10000000-0000-4000-8000-000000000001"  # the seed's, with Meta channel SEED_NUMBER
SEED_NUMBER = "1000000000000001"
APP_SECRET = "doctor-test-app-secret-0001"
D360_SECRET = "doctor-test-360-secret-0002"
VERIFY_TOKEN = "doctor-test-verify-token-3"
DEFAULT_TOKEN = "doctor-test-default-token-4"
D360_KEY = "doctor-test-360dialog-key-5"
SECRETS = (APP_SECRET, D360_SECRET, VERIFY_TOKEN, DEFAULT_TOKEN, D360_KEY, SERVICE_ROLE_KEY)


async def _add_channel(
    url: str, provider: str, *, api_base_url: str | None = None, **credentials: str
) -> str:
    number = str(uuid.uuid4().int)[:15]
    conn = await asyncpg.connect(url)
    try:
        channel_id = await conn.fetchval(
            "insert into public.whatsapp_channels (workspace_id, phone_number_id, provider,"
            " api_base_url) values ($1, $2, $3, $4) returning id",
            uuid.UUID(WORKSPACE),
            number,
            provider,
            api_base_url,
        )
        if credentials:
            await conn.execute(
                "insert into private.whatsapp_channel_credentials (channel_id, access_token,"
                " api_key) values ($1, $2, $3)",
                channel_id,
                credentials.get("access_token"),
                credentials.get("api_key"),
            )
    finally:
        await conn.close()
    return number


@pytest.fixture
async def fresh_db(empty_database_factory: Callable[[], Awaitable[str]]) -> str:
    """A migrated, seeded database of this test's own, with a 360dialog channel and its key."""
    url = await empty_database_factory()
    await migrations.apply(url, seed=True)
    await _add_channel(url, "360dialog", api_key=D360_KEY)
    return url


@pytest.fixture
def settings(devstack_url: str, fresh_db: str, redis_url: str) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "SUPABASE_URL": devstack_url,
            "SUPABASE_SERVICE_ROLE_KEY": SecretStr(SERVICE_ROLE_KEY),
            "DATABASE_URL": fresh_db,
            "REDIS_URL": redis_url,
            "WHATSAPP_APP_SECRET": SecretStr(APP_SECRET),
            "WHATSAPP_360DIALOG_WEBHOOK_SECRET": SecretStr(D360_SECRET),
            "WHATSAPP_VERIFY_TOKEN": SecretStr(VERIFY_TOKEN),
            "WHATSAPP_API_BASE_URL": f"{devstack_url}/whatsapp/v21.0",
            "WHATSAPP_360DIALOG_BASE_URL": f"{devstack_url}/whatsapp/360dialog",
            "WHATSAPP_ACCESS_TOKEN": SecretStr(DEFAULT_TOKEN),
            **overrides,
        }
        return Settings(_env_file=None, **values)

    return make


async def diagnose(settings: Settings, *, local: bool = False) -> list[Check]:
    return await run(settings, _send_rule, local=local, seconds=3)


def problems(checks: Sequence[Check]) -> dict[str, Check]:
    return {c.name: c for c in checks if c.status == "problem"}


def printed(checks: Sequence[Check]) -> str:
    text = "\n".join(c.line() for c in checks)
    for secret in SECRETS:
        assert secret not in text
    return text


async def test_all_is_well_against_a_migrated_database_the_stand_in_and_redis(
    settings: Callable[..., Settings],
) -> None:
    checks = await diagnose(settings())
    text = printed(checks)
    assert [c.status for c in checks] == ["ok"] * len(checks), text
    names = [c.name for c in checks]
    assert names[:8] == [
        "supabase",
        "supabase key",
        "database",
        "migrations",
        "schema",
        "realtime",
        "redis",
        "webhook secrets",
    ]
    assert f"channel {SEED_NUMBER} (meta)" in names
    assert "360dialog accepts its API key (…ey-5)" in text
    assert "answers with its token (…en-4)" in text
    assert "supabase_realtime holds conversations, messages" in text


async def test_the_command_exits_0_when_all_is_well_and_1_on_a_problem(
    settings: Callable[..., Settings], tmp_path: Path
) -> None:
    env = {
        key: value.get_secret_value() if isinstance(value, SecretStr) else str(value)
        for key, value in settings().model_dump().items()
        if value is not None
    }
    code, out = await _command(["doctor", "--json"], env, tmp_path)
    assert code == 0, out
    document = json.loads(out)
    assert document["ok"] is True
    assert {c["status"] for c in document["checks"]} == {"ok"}

    code, out = await _command(["doctor"], {**env, "SUPABASE_SERVICE_ROLE_KEY": ANON_KEY}, tmp_path)
    assert code == 1, out
    assert "PROBLEM  supabase key: SUPABASE_SERVICE_ROLE_KEY is the anon key" in out
    assert out.endswith("2 problem(s), 0 warning(s)\n")
    assert ANON_KEY not in out


async def _command(args: list[str], env: dict[str, str], cwd: Path) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bridge.cli",
        *args,
        cwd=cwd,  # no .env there: the environment alone configures it
        env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def test_an_anon_key_is_named_with_its_fix(settings: Callable[..., Settings]) -> None:
    found = problems(await diagnose(settings(SUPABASE_SERVICE_ROLE_KEY=SecretStr(ANON_KEY))))
    assert set(found) == {"supabase", "supabase key"}
    assert "is the anon key (…n_I0)" in found["supabase key"].message
    assert "service_role key" in (found["supabase key"].fix or "")
    assert "may not call public.bridge_ready" in found["supabase"].message


def _jwt(claims: dict[str, Any]) -> str:
    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

    return f"{part({'alg': 'HS256', 'typ': 'JWT'})}.{part(claims)}.c2lnbmF0dXJl"


def test_the_key_alone_says_what_kind_it_is() -> None:
    assert key_check(SERVICE_ROLE_KEY).status == "ok"
    assert key_check("sb_secret_" + "x" * 30).status == "ok"
    publishable = key_check("sb_publishable_" + "x" * 30)
    assert "publishable key" in publishable.message
    user = key_check(_jwt({"role": "authenticated", "sub": str(uuid.uuid4())}))
    assert "a user's session token with role 'authenticated'" in user.message
    expired = key_check(_jwt({"role": "service_role", "exp": int(time.time()) - 86400}))
    assert "expired on" in expired.message
    assert key_check("not-a-key-at-all-but-long").status == "problem"


async def test_the_transaction_pooler_is_named_from_the_url_alone(
    settings: Callable[..., Settings],
) -> None:
    pooler = (
        "postgresql://postgres.ref:pw-0001@aws-0-eu-central-1.pooler.supabase.com:6543/postgres"
    )
    checks = await diagnose(settings(DATABASE_URL=pooler))
    found = problems(checks)
    assert set(found) == {"database"}
    assert "Supavisor's transaction pooler" in found["database"].message
    assert "advisory locks and LISTEN need session mode" in found["database"].message
    assert "session mode" in (found["database"].fix or "")
    assert "pw-0001" not in printed(checks)
    assert {c.name: c.status for c in checks}["channels"] == "skipped"


async def test_a_missing_migration_and_a_dropped_function_are_named(
    settings: Callable[..., Settings], fresh_db: str
) -> None:
    last = migrations.list_migrations()[-1]
    conn = await asyncpg.connect(fresh_db)
    try:
        await conn.execute(
            "delete from supabase_migrations.schema_migrations where version = $1", last.version
        )
        await conn.execute("drop function public.bridge_ready()")
    finally:
        await conn.close()
    found = problems(await diagnose(settings()))
    assert set(found) == {"migrations", "schema"}
    assert found["migrations"].message == f"1 not applied: {last.path.name}"
    assert "bridge db apply" in (found["migrations"].fix or "")
    assert "missing: function public.bridge_ready" in found["schema"].message


async def test_a_publication_missing_a_table_is_named(
    settings: Callable[..., Settings], fresh_db: str
) -> None:
    conn = await asyncpg.connect(fresh_db)
    try:
        await conn.execute("alter publication supabase_realtime drop table public.messages")
    finally:
        await conn.close()
    found = problems(await diagnose(settings()))
    assert set(found) == {"realtime"}
    assert "lacks public.messages" in found["realtime"].message
    assert found["realtime"].fix == "alter publication supabase_realtime add table public.messages;"


async def test_an_unreachable_redis_is_named(settings: Callable[..., Settings]) -> None:
    found = problems(await diagnose(settings(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")))
    assert set(found) == {"redis"}
    assert "ConnectionError" in found["redis"].message
    assert "REDIS_URL" in (found["redis"].fix or "")


async def test_blank_secrets_are_unset(settings: Callable[..., Settings]) -> None:
    blank = {
        key: SecretStr("  ")
        for key in (
            "WHATSAPP_APP_SECRET",
            "WHATSAPP_360DIALOG_WEBHOOK_SECRET",
            "WHATSAPP_VERIFY_TOKEN",
        )
    }
    found = problems(await diagnose(settings(**blank)))
    assert set(found) == {"webhook secrets", "verify token"}
    assert "bridge serve refuses to start" in found["webhook secrets"].message
    assert "WHATSAPP_APP_SECRET to the Meta app's secret" in (found["webhook secrets"].fix or "")
    assert "Meta's webhook verification (GET) is refused" in found["verify token"].message

    insecure = await diagnose(settings(**blank, BRIDGE_INSECURE_DEV=True))
    statuses = {c.name: c.status for c in insecure}
    assert statuses["webhook secrets"] == "warning"
    local = await diagnose(settings(**blank, BRIDGE_INSECURE_DEV=True), local=True)
    assert {c.name: c.status for c in local}["webhook secrets"] == "ok"


async def test_a_channel_without_credentials_is_named(settings: Callable[..., Settings]) -> None:
    # The seed's Meta channel has no token of its own: without the default it has none.
    found = problems(await diagnose(settings(WHATSAPP_ACCESS_TOKEN=None)))
    name = f"channel {SEED_NUMBER} (meta)"
    assert set(found) == {name}
    assert "has no credentials" in found[name].message
    assert "private.whatsapp_channel_credentials.access_token" in (found[name].fix or "")


async def test_a_channel_pointing_elsewhere_is_refused_as_the_worker_would(
    settings: Callable[..., Settings], fresh_db: str
) -> None:
    number = await _add_channel(
        fresh_db, "meta", api_base_url="https://graph.example.net/v21.0", access_token="t" * 20
    )
    found = problems(await diagnose(settings()))
    name = f"channel {number} (meta)"
    assert set(found) == {name}
    assert "the worker would refuse to send" in found[name].message
    assert "WHATSAPP_API_ALLOWED_BASE_URLS" in found[name].message


async def test_a_token_the_provider_rejects_is_named(
    settings: Callable[..., Settings], fresh_db: str, devstack_url: str
) -> None:
    number = await _add_channel(fresh_db, "meta", access_token="expired-token-of-the-test-0190")
    async with httpx.AsyncClient() as client:
        fault = {"kind": "graph_error", "code": 190, "phone_number_id": number, "applies_to": "any"}
        response = await client.post(f"{devstack_url}/whatsapp/_control/faults", json=fault)
        assert response.status_code == 201
    checks = await diagnose(settings())
    found = problems(checks)
    name = f"channel {number} (meta)"
    assert set(found) == {name}
    assert found[name].message == (
        "the provider refuses its credential (…0190): expired, revoked or wrong (HTTP 401, #190)"
    )
    assert "expired-token-of-the-test-0190" not in printed(checks)
