"""The seed playbook loaded from the session database, and a chat driver for the engine."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest

from bridge.migrations import SUPABASE_DIR
from jobs.engine.playbook import Playbook
from jobs.engine.playbook_store import load_playbook
from jobs.engine.protocol import (
    Contact,
    Engine,
    InboundMessage,
    Session,
    TurnInput,
    TurnResult,
)
from jobs.engine.sales import SalesEngine
from tests.supabase.tenancy import create_user, create_workspace

AGENT_ID = "somnio-sales-v1"
SEED = SUPABASE_DIR / "seeds" / "playbook.sql"


@pytest.fixture(scope="session")
def seed_sql() -> str:
    return SEED.read_text()


@pytest.fixture(scope="session")
async def seeded_db(db: asyncpg.Pool, seed_sql: str) -> asyncpg.Pool:
    """The session database with the playbook seed (idempotent, so loading it again when
    `bridge db apply --seed` already did is harmless)."""
    await db.execute(seed_sql)
    return db


@pytest.fixture(scope="session")
async def playbook(seeded_db: asyncpg.Pool) -> Playbook:
    """The global default playbook, as a workspace without overrides sees it."""
    return await load_playbook(seeded_db, AGENT_ID, uuid.uuid4())


@pytest.fixture(scope="session")
def engine(playbook: Playbook) -> SalesEngine:
    return SalesEngine(playbook)


@pytest.fixture
async def workspace(database_url: str, seeded_db: asyncpg.Pool) -> uuid.UUID:
    """A fresh workspace (and its owner), for playbook overrides."""
    conn = await asyncpg.connect(database_url)
    try:
        owner = await create_user(conn)
        return await create_workspace(conn, owner)
    finally:
        await conn.close()


def message(
    text: str | None, type: str = "text", content: dict[str, Any] | None = None
) -> InboundMessage:
    return InboundMessage(
        message_id=uuid.uuid4(),
        wamid=f"wamid.{uuid.uuid4().hex}",
        type=type,
        text=text,
        content=content or {},
        timestamp=datetime(2026, 11, 24, 12, 0, tzinfo=UTC),
    )


def turn_input(
    messages: list[InboundMessage],
    *,
    mode: str = "conversacion",
    state: dict[str, Any] | None = None,
    is_new: bool = False,
    contact_name: str = "Juanito",
) -> TurnInput:
    return TurnInput(
        workspace_id=uuid.uuid4(),
        conversation_id=uuid.uuid4(),
        contact=Contact(id=uuid.uuid4(), name=contact_name, phone="573001112233"),
        session=Session(
            id=uuid.uuid4(),
            agent_id=AGENT_ID,
            mode=mode,
            state=state or {},
            version=1,
            is_new=is_new,
        ),
        messages=messages,
    )


@dataclass
class Chat:
    """One customer talking to an engine: carries the mode and state from turn to turn, as
    the worker does with the session row."""

    engine: Engine
    mode: str = "conversacion"
    state: dict[str, Any] = field(default_factory=dict)
    is_new: bool = True
    results: list[TurnResult] = field(default_factory=list)

    async def send(self, *items: str | InboundMessage) -> TurnResult:
        messages = [item if isinstance(item, InboundMessage) else message(item) for item in items]
        result = await self.engine.decide(
            turn_input(messages, mode=self.mode, state=self.state, is_new=self.is_new)
        )
        self.mode, self.state, self.is_new = result.mode, result.state, False
        self.results.append(result)
        return result


@pytest.fixture
def chat(engine: SalesEngine) -> Callable[[], Chat]:
    return lambda: Chat(engine)


def template_keys(playbook: Playbook, result: TurnResult) -> list[str]:
    """Replies as "intent/language/visit/orden": readable in assertions, unlike template ids."""
    by_id = {
        t.id: f"{t.intent}/{t.language}/{t.visit_type}/{t.orden}"
        for group in playbook.templates.values()
        for t in group
    }
    return [by_id.get(r.template_id or "", "?") for r in result.replies]
