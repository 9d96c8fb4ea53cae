"""Loading a workspace's playbook from Postgres, and keeping it for a short while.

Four small queries per load (intents, templates, transitions, settings). The cache keeps a
playbook per (agent, workspace) for `ttl_s` seconds, so an edit in the frontend reaches the
engine within that time; concurrent turns of one workspace share one load. If a reload fails
(database down, timeout) the previous playbook keeps serving and the failure is logged: a
stale price list is better than no answer.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from decimal import Decimal
from typing import Any

import asyncpg

from jobs.engine.modes import DEFAULT_TRANSITIONS
from jobs.engine.playbook import (
    IntentRule,
    Playbook,
    PlaybookSettings,
    Template,
    group_templates,
)
from jobs.engine.protocol import EngineConfigurationError

log = logging.getLogger(__name__)

DEFAULT_TTL_S = 30.0
_QUERY_TIMEOUT_S = 5.0

_INTENTS_SQL = """
select intent, kind, language, keywords, patterns, modes, priority, next_mode, pack, handoff,
       enabled, workspace_id is not null as own
  from public.agent_intents
 where agent_id = $1 and (workspace_id is null or workspace_id = $2)
 order by id
"""
_TEMPLATES_SQL = """
select id, intent, language, visit_type, orden, content, delay_ms, priority, repeatable, enabled,
       workspace_id is not null as own
  from public.agent_templates
 where agent_id = $1 and (workspace_id is null or workspace_id = $2)
"""
_TRANSITIONS_SQL = """
select from_mode, to_mode, workspace_id is not null as own
  from public.agent_mode_transitions
 where agent_id = $1 and (workspace_id is null or workspace_id = $2)
"""
_SETTINGS_SQL = """
select *, workspace_id is not null as own
  from public.agent_playbook_settings
 where agent_id = $1 and (workspace_id is null or workspace_id = $2)
"""


async def load_playbook(
    pool: asyncpg.Pool, agent_id: str, workspace_id: uuid.UUID | None
) -> Playbook:
    """The playbook of `agent_id` as `workspace_id` sees it (its rows over the defaults)."""
    async with pool.acquire() as conn:
        intents = await conn.fetch(_INTENTS_SQL, agent_id, workspace_id, timeout=_QUERY_TIMEOUT_S)
        templates = await conn.fetch(
            _TEMPLATES_SQL, agent_id, workspace_id, timeout=_QUERY_TIMEOUT_S
        )
        transitions = await conn.fetch(
            _TRANSITIONS_SQL, agent_id, workspace_id, timeout=_QUERY_TIMEOUT_S
        )
        settings = await conn.fetch(_SETTINGS_SQL, agent_id, workspace_id, timeout=_QUERY_TIMEOUT_S)
    if not intents and not templates:
        raise EngineConfigurationError(
            f"agent {agent_id!r} has no playbook (no agent_intents or agent_templates rows"
            f" for it or for workspace {workspace_id}); load supabase/seeds/playbook.sql"
        )
    return Playbook(
        agent_id=agent_id,
        workspace_id=workspace_id,
        rules=tuple(_rule(r) for r in _own_over_default(intents, lambda r: r["intent"])),
        templates=group_templates(
            [
                _template(r)
                for r in _own_over_default(
                    templates, lambda r: (r["intent"], r["language"], r["visit_type"])
                )
            ]
        ),
        transitions=_transitions(transitions),
        settings=_settings(settings),
    )


def _own_over_default(
    rows: Sequence[asyncpg.Record], key: Callable[[asyncpg.Record], object]
) -> list[asyncpg.Record]:
    """Enabled rows, where a workspace's rows for a key replace the defaults for that key
    (disabled ones included: that is how a workspace switches a default off)."""
    overridden = {key(r) for r in rows if r["own"]}
    return [r for r in rows if r["enabled"] and (r["own"] or key(r) not in overridden)]


def _rule(row: asyncpg.Record) -> IntentRule:
    return IntentRule(
        intent=row["intent"],
        kind=row["kind"],
        language=row["language"],
        keywords=tuple(row["keywords"]),
        patterns=tuple(row["patterns"]),
        modes=frozenset(row["modes"]),
        priority=row["priority"],
        next_mode=row["next_mode"],
        pack=row["pack"],
        handoff=row["handoff"],
    )


def _template(row: asyncpg.Record) -> Template:
    return Template(
        id=str(row["id"]),
        intent=row["intent"],
        content=row["content"],
        language=row["language"],
        visit_type=row["visit_type"],
        orden=row["orden"],
        delay_ms=row["delay_ms"],
        priority=row["priority"],
        repeatable=row["repeatable"],
    )


def _transitions(rows: Sequence[asyncpg.Record]) -> frozenset[tuple[str, str]]:
    own = [r for r in rows if r["own"]]
    chosen = own or rows
    if not chosen:
        return DEFAULT_TRANSITIONS
    return frozenset((r["from_mode"], r["to_mode"]) for r in chosen)


def _settings(rows: Sequence[asyncpg.Record]) -> PlaybookSettings:
    """Each column from the workspace's row if set, else the global row, else the default."""
    ordered = sorted(rows, key=lambda r: r["own"], reverse=True)

    def pick(column: str) -> Any:
        return next((r[column] for r in ordered if r[column] is not None), None)

    values: dict[str, Any] = {}
    prices: dict[str, Decimal] = dict(PlaybookSettings().prices)
    for pack in ("1x", "2x", "3x"):
        price = pick(f"price_{pack}")
        if price is not None:
            prices[pack] = Decimal(price)
    values["prices"] = prices
    for f in fields(PlaybookSettings):
        if f.name == "prices":
            continue
        value = pick(f.name)
        if value is not None:
            values[f.name] = tuple(value) if isinstance(value, list) else value
    return PlaybookSettings(**values)


@dataclass
class _Entry:
    playbook: Playbook
    loaded_at: float


class PlaybookCache:
    """Playbooks by (agent, workspace), reloaded after `ttl_s` seconds. `clock` is injectable
    so tests can step past the TTL without sleeping."""

    def __init__(
        self, *, ttl_s: float = DEFAULT_TTL_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl_s = ttl_s
        self._clock = clock
        self._entries: dict[tuple[str, uuid.UUID | None], _Entry] = {}
        self._locks: dict[tuple[str, uuid.UUID | None], asyncio.Lock] = {}

    async def get(
        self, pool: asyncpg.Pool, agent_id: str, workspace_id: uuid.UUID | None
    ) -> Playbook:
        key = (agent_id, workspace_id)
        entry = self._entries.get(key)
        if entry is not None and self._fresh(entry):
            return entry.playbook
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            entry = self._entries.get(key)
            if entry is not None and self._fresh(entry):
                return entry.playbook  # another turn reloaded it while this one waited
            try:
                playbook = await load_playbook(pool, agent_id, workspace_id)
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                if entry is None:
                    raise
                log.warning(
                    "engine.playbook.reload_failed",
                    extra={
                        "agent_id": agent_id,
                        "workspace_id": str(workspace_id),
                        "error": repr(exc),
                    },
                )
                entry.loaded_at = self._clock()  # retry after another TTL, not on every turn
                return entry.playbook
            self._entries[key] = _Entry(playbook, self._clock())
            return playbook

    def _fresh(self, entry: _Entry) -> bool:
        return self._clock() - entry.loaded_at < self.ttl_s
