"""Loading the playbook: workspace rows over the global defaults, and the TTL cache."""

from __future__ import annotations

import uuid
from decimal import Decimal

import asyncpg
import pytest

from jobs.engine.modes import DEFAULT_TRANSITIONS
from jobs.engine.playbook import FIRST_VISIT
from jobs.engine.playbook_store import PlaybookCache, load_playbook
from jobs.engine.protocol import EngineConfigurationError
from tests.jobs.engine.conftest import AGENT_ID


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_the_seed_is_the_documented_default(seeded_db: asyncpg.Pool) -> None:
    playbook = await load_playbook(seeded_db, AGENT_ID, None)
    settings = playbook.settings
    assert settings.product_name == "Somnio"
    assert dict(settings.prices) == {
        "1x": Decimal("77900"),
        "2x": Decimal("109900"),
        "3x": Decimal("139900"),
    }
    assert (settings.max_not_understood, settings.non_text_policy) == (3, "ask_text")
    assert settings.required_fields == ("nombre", "telefono", "direccion", "ciudad")
    assert playbook.transitions >= DEFAULT_TRANSITIONS
    intents = {r.intent for r in playbook.rules}
    assert {"hola", "precio", "captura_datos_si_compra", "asesor", "queja", "cancelar"} <= intents
    assert {r.language for r in playbook.rules} == {"es", "en", "any"}
    for intent in ("fallback", "repetido", "pedir_texto", "datos_faltantes", "ofrecer_promos"):
        for language in ("es", "en"):
            assert playbook.templates_for(intent, language, FIRST_VISIT), (intent, language)


async def test_workspace_rows_replace_the_defaults_they_cover(
    seeded_db: asyncpg.Pool, workspace: uuid.UUID
) -> None:
    async with seeded_db.acquire() as conn:
        await conn.execute(
            "insert into public.agent_templates (agent_id, workspace_id, intent, language,"
            " visit_type, orden, content) values ($1, $2, 'precio', 'es', 'primera_vez', 0,"
            " 'Hoy: {{precio_1x}}')",
            AGENT_ID,
            workspace,
        )
        await conn.execute(
            "insert into public.agent_intents (agent_id, workspace_id, intent, keywords, enabled)"
            " values ($1, $2, 'invima', '{}', false)",
            AGENT_ID,
            workspace,
        )
        await conn.execute(
            "insert into public.agent_playbook_settings (agent_id, workspace_id, price_1x,"
            " non_text_policy) values ($1, $2, 50000, 'handoff')",
            AGENT_ID,
            workspace,
        )
        await conn.execute(
            "insert into public.agent_mode_transitions (agent_id, workspace_id, from_mode,"
            " to_mode) values ($1, $2, 'conversacion', 'collecting_data')",
            AGENT_ID,
            workspace,
        )
    own = await load_playbook(seeded_db, AGENT_ID, workspace)
    default = await load_playbook(seeded_db, AGENT_ID, uuid.uuid4())

    assert [t.content for t in own.templates_for("precio", "es", FIRST_VISIT)] == [
        "Hoy: {{precio_1x}}"
    ]
    assert len(default.templates_for("precio", "es", FIRST_VISIT)) == 3
    # other groups of the same intent keep the default
    assert own.templates_for("precio", "en", FIRST_VISIT) == default.templates_for(
        "precio", "en", FIRST_VISIT
    )
    assert "invima" not in {r.intent for r in own.rules}
    assert "invima" in {r.intent for r in default.rules}
    assert own.settings.prices["1x"] == Decimal("50000")
    assert own.settings.prices["2x"] == Decimal("109900")  # not set: inherited
    assert own.settings.non_text_policy == "handoff"
    assert own.settings.product_name == "Somnio"
    assert own.transitions == frozenset({("conversacion", "collecting_data")})


async def test_an_agent_without_a_playbook_is_a_configuration_error(
    seeded_db: asyncpg.Pool,
) -> None:
    with pytest.raises(EngineConfigurationError, match="no playbook"):
        await load_playbook(seeded_db, "nobody-v1", uuid.uuid4())


async def test_the_cache_serves_until_the_ttl_then_reloads(
    seeded_db: asyncpg.Pool, workspace: uuid.UUID
) -> None:
    clock = FakeClock()
    cache = PlaybookCache(ttl_s=30, clock=clock)
    first = await cache.get(seeded_db, AGENT_ID, workspace)
    await seeded_db.execute(
        "insert into public.agent_playbook_settings (agent_id, workspace_id, product_name)"
        " values ($1, $2, 'Somnio Plus')",
        AGENT_ID,
        workspace,
    )
    clock.now += 29
    assert await cache.get(seeded_db, AGENT_ID, workspace) is first
    clock.now += 2
    reloaded = await cache.get(seeded_db, AGENT_ID, workspace)
    assert reloaded is not first
    assert reloaded.settings.product_name == "Somnio Plus"


async def test_a_failed_reload_keeps_serving_the_last_playbook(
    database_url: str, seeded_db: asyncpg.Pool
) -> None:
    clock = FakeClock()
    cache = PlaybookCache(ttl_s=30, clock=clock)
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=1)
    workspace_id = uuid.uuid4()
    first = await cache.get(pool, AGENT_ID, workspace_id)
    await pool.close()
    clock.now += 60
    assert await cache.get(pool, AGENT_ID, workspace_id) is first
    with pytest.raises(asyncpg.InterfaceError):
        await cache.get(pool, AGENT_ID, uuid.uuid4())  # nothing to fall back on
