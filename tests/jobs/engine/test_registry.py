"""Choosing the engine by id, and playbook edits reaching it after the cache TTL."""

from __future__ import annotations

import uuid

import asyncpg
import pytest

from jobs.engine.claude import ClaudeEngine, ClaudeSettings
from jobs.engine.playbook_store import PlaybookCache
from jobs.engine.protocol import EngineConfigurationError
from jobs.engine.registry import EngineRegistry
from jobs.engine.sales import SalesEngine
from tests.jobs.engine.conftest import AGENT_ID, message, turn_input
from tests.jobs.engine.test_playbook_store import FakeClock


@pytest.mark.parametrize("agent_id", ["somnio-sales-v2", "", "SOMNIO-SALES-V1"])
async def test_an_unknown_engine_id_is_a_configuration_error(
    seeded_db: asyncpg.Pool, agent_id: str
) -> None:
    with pytest.raises(EngineConfigurationError, match="unknown conversational agent"):
        await EngineRegistry().build(agent_id, workspace_id=uuid.uuid4(), pool=seeded_db)


async def test_the_default_id_builds_the_sales_engine(seeded_db: asyncpg.Pool) -> None:
    engine = await EngineRegistry().build(AGENT_ID, workspace_id=uuid.uuid4(), pool=seeded_db)
    assert isinstance(engine, SalesEngine)
    assert engine.agent_id == AGENT_ID
    result = await engine.decide(turn_input([message("hola")], is_new=True))
    assert result.replies


async def test_the_diagnostic_engine_needs_no_playbook(seeded_db: asyncpg.Pool) -> None:
    engine = await EngineRegistry().build(
        "diagnostic-v1", workspace_id=uuid.uuid4(), pool=seeded_db
    )
    assert engine.agent_id == "diagnostic-v1"


async def test_the_llm_engine_needs_its_settings(seeded_db: asyncpg.Pool) -> None:
    registry = EngineRegistry(llm=None)
    with pytest.raises(EngineConfigurationError, match="ANTHROPIC_API_KEY"):
        await registry.build("claude-sales-v1", workspace_id=uuid.uuid4(), pool=seeded_db)
    configured = EngineRegistry(llm=ClaudeSettings(api_key="test-key"))
    try:
        engine = await configured.build(
            "claude-sales-v1", workspace_id=uuid.uuid4(), pool=seeded_db
        )
        assert isinstance(engine, ClaudeEngine)
        assert engine.playbook.settings.product_name == "Somnio"
    finally:
        await configured.aclose()


async def test_playbook_edits_take_effect_after_the_ttl(
    seeded_db: asyncpg.Pool, workspace: uuid.UUID
) -> None:
    clock = FakeClock()
    registry = EngineRegistry(cache=PlaybookCache(ttl_s=30, clock=clock))

    async def price_reply() -> str:
        engine = await registry.build(AGENT_ID, workspace_id=workspace, pool=seeded_db)
        result = await engine.decide(turn_input([message("precio")], is_new=True))
        return result.replies[0].text

    before = await price_reply()
    assert "$77,900" in before
    same = await registry.build(AGENT_ID, workspace_id=workspace, pool=seeded_db)
    assert same is await registry.build(AGENT_ID, workspace_id=workspace, pool=seeded_db)

    await seeded_db.execute(
        "insert into public.agent_playbook_settings (agent_id, workspace_id, price_1x)"
        " values ($1, $2, 69900)",
        AGENT_ID,
        workspace,
    )
    clock.now += 10
    assert await price_reply() == before
    clock.now += 25
    assert "$69,900" in await price_reply()
