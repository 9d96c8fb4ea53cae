"""supabase/seed.sql: the demo workspace the local stack and the docs rely on."""

from __future__ import annotations

from uuid import UUID

import asyncpg

from bridge.migrations import SUPABASE_DIR
from jobs.engine.playbook import FIRST_VISIT, SYSTEM_INTENTS
from tests.fixtures.postgres import acting_as

DEMO_WORKSPACE = UUID("10000000-0000-4000-8000-000000000001")
DEMO_TABLES = (
    "auth.users",
    "public.workspaces",
    "public.workspace_members",
    "public.whatsapp_channels",
    "public.workspace_agent_config",
    "public.teams",
    "public.team_members",
)


async def test_demo_store_is_routable_and_the_agent_is_on(conn: asyncpg.Connection) -> None:
    channel = await conn.fetchrow(
        "select workspace_id, provider, api_base_url from public.whatsapp_channels"
        " where phone_number_id = '1000000000000001'"
    )
    assert channel is not None
    assert tuple(channel) == (DEMO_WORKSPACE, "meta", None)
    config = await conn.fetchrow(
        "select agent_enabled, conversational_agent_id from public.workspace_agent_config"
        " where workspace_id = $1",
        DEMO_WORKSPACE,
    )
    assert config is not None
    assert tuple(config) == (True, "somnio-sales-v1")
    name = await conn.fetchval("select name from public.workspaces where id = $1", DEMO_WORKSPACE)
    assert name == "Demo Store"


async def test_demo_team_has_two_online_members_and_one_offline(conn: asyncpg.Connection) -> None:
    rows = await conn.fetch(
        "select tm.is_online, wm.role from public.team_members tm"
        " join public.teams t on t.id = tm.team_id"
        " join public.workspace_members wm"
        "   on wm.workspace_id = t.workspace_id and wm.user_id = tm.user_id"
        " where t.workspace_id = $1 and t.name = 'Ventas'",
        DEMO_WORKSPACE,
    )
    assert sorted(r["is_online"] for r in rows) == [False, True, True]
    assert {r["role"] for r in rows} == {"agent"}
    owners = await conn.fetchval(
        "select count(*) from public.workspace_members where workspace_id = $1 and role = 'owner'",
        DEMO_WORKSPACE,
    )
    assert owners == 1


async def test_demo_handoffs_go_to_the_online_agents(conn: asyncpg.Connection) -> None:
    online = {
        r["user_id"]
        for r in await conn.fetch(
            "select tm.user_id from public.team_members tm join public.teams t on t.id = tm.team_id"
            " where t.workspace_id = $1 and tm.is_online",
            DEMO_WORKSPACE,
        )
    }
    async with acting_as(conn, "service_role"):
        picks = {
            await conn.fetchval("select public.assign_next_agent($1)", DEMO_WORKSPACE)
            for _ in range(2)
        }
    assert picks == online


async def test_seed_can_run_again_without_changing_anything(conn: asyncpg.Connection) -> None:
    seed = (SUPABASE_DIR / "seed.sql").read_text()
    counts = " union all ".join(f"select '{t}', count(*) from {t}" for t in DEMO_TABLES)
    async with conn.transaction():
        before = await conn.fetch(counts)
        await conn.execute(seed)
        after = await conn.fetch(counts)
    assert before == after


async def test_demo_playbook_has_a_template_for_every_intent_the_engine_raises(
    conn: asyncpg.Connection,
) -> None:
    """The engine answers these on its own initiative; one without a template would leave the
    customer with no reply."""
    languages = {
        r["language"]
        for r in await conn.fetch(
            "select distinct language from public.agent_templates where agent_id = 'somnio-sales-v1'"
        )
    }
    assert languages, "the demo playbook has templates"
    missing = [
        (intent, language)
        for intent in SYSTEM_INTENTS
        for language in sorted(languages)
        if not await conn.fetchval(
            "select exists (select 1 from public.agent_templates where agent_id = 'somnio-sales-v1'"
            " and intent = $1 and language = $2 and visit_type = $3)",
            intent,
            language,
            FIRST_VISIT,
        )
    ]
    assert missing == []
