"""Which engine answers a workspace: `workspace_agent_config.conversational_agent_id` -> Engine.

    somnio-sales-v1   the data-driven sales engine (the original engine's id, so existing
                      sessions and config rows stay valid)
    claude-sales-v1   the LLM engine; it reads the somnio-sales-v1 playbook for its facts
    diagnostic-v1     echoes what it received; for smoke tests, load tests and runbooks

Anything else raises `EngineConfigurationError`, and the turn hands off. Playbooks come from
the database through a short-lived cache (`PlaybookCache`), so an edit in the frontend takes
effect within its TTL (30 s by default). A compiled sales engine is reused for as long as its
playbook is.

The worker builds one `EngineRegistry` from its settings at start-up and closes it at shutdown.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import asyncpg

from jobs.engine.claude import ClaudeEngine, ClaudeSettings, create_client
from jobs.engine.diagnostic import AGENT_ID as DIAGNOSTIC_AGENT_ID
from jobs.engine.diagnostic import DiagnosticEngine
from jobs.engine.playbook import Playbook
from jobs.engine.playbook_store import PlaybookCache
from jobs.engine.protocol import Engine, EngineConfigurationError
from jobs.engine.sales import SalesEngine

if TYPE_CHECKING:
    from anthropic import AsyncAnthropic

SALES_AGENT_ID = "somnio-sales-v1"
CLAUDE_AGENT_ID = "claude-sales-v1"
ENGINE_IDS: tuple[str, ...] = (SALES_AGENT_ID, CLAUDE_AGENT_ID, DIAGNOSTIC_AGENT_ID)


class EngineRegistry:
    def __init__(
        self,
        *,
        cache: PlaybookCache | None = None,
        llm: ClaudeSettings | None = None,
        llm_client_options: dict[str, Any] | None = None,
    ) -> None:
        self.cache = cache or PlaybookCache()
        self.llm = llm
        self._llm_client_options = llm_client_options or {}
        self._llm_client: AsyncAnthropic | None = None
        self._sales: dict[tuple[str, uuid.UUID], tuple[Playbook, SalesEngine]] = {}

    async def build(self, agent_id: str, *, workspace_id: uuid.UUID, pool: asyncpg.Pool) -> Engine:
        if agent_id == SALES_AGENT_ID:
            return await self._sales_engine(agent_id, workspace_id, pool)
        if agent_id == CLAUDE_AGENT_ID:
            return await self._claude_engine(agent_id, workspace_id, pool)
        if agent_id == DIAGNOSTIC_AGENT_ID:
            return DiagnosticEngine()
        raise EngineConfigurationError(
            f"unknown conversational agent {agent_id!r} for workspace {workspace_id};"
            f" known engines: {', '.join(ENGINE_IDS)}"
            " (workspace_agent_config.conversational_agent_id)"
        )

    async def aclose(self) -> None:
        if self._llm_client is not None:
            await self._llm_client.close()
            self._llm_client = None

    async def _sales_engine(
        self, agent_id: str, workspace_id: uuid.UUID, pool: asyncpg.Pool
    ) -> SalesEngine:
        playbook = await self.cache.get(pool, agent_id, workspace_id)
        known = self._sales.get((agent_id, workspace_id))
        if known is not None and known[0] is playbook:
            return known[1]
        engine = SalesEngine(playbook, agent_id=agent_id)
        self._sales[(agent_id, workspace_id)] = (playbook, engine)
        return engine

    async def _claude_engine(
        self, agent_id: str, workspace_id: uuid.UUID, pool: asyncpg.Pool
    ) -> ClaudeEngine:
        if self.llm is None:
            raise EngineConfigurationError(
                f"{agent_id} needs an Anthropic API key (ANTHROPIC_API_KEY) and the `llm` extra"
            )
        playbook = await self.cache.get(pool, SALES_AGENT_ID, workspace_id)
        if self._llm_client is None:
            self._llm_client = create_client(self.llm, **self._llm_client_options)
        return ClaudeEngine(
            agent_id,
            playbook,
            self._llm_client,
            model=self.llm.model,
            max_tokens=self.llm.max_tokens,
            timeout_s=self.llm.timeout_s,
        )
