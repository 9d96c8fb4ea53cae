"""Enumerations that live both in a SQL CHECK and in Python, tied: a value added on one side only
fails here instead of at a customer's turn."""

from __future__ import annotations

import re
import typing

import asyncpg

from bridge.api.intake import Provider
from jobs.engine.modes import HANDOFF, MODES
from jobs.engine.playbook import KINDS
from jobs.turn_store import OutboxKind


async def _check_values(db: asyncpg.Pool, table: str, column: str) -> set[str]:
    """The quoted values of the CHECK constraints of `table` that name `column`."""
    definitions = await db.fetch(
        "select pg_get_constraintdef(c.oid) as def from pg_constraint c"
        " join pg_attribute a on a.attrelid = c.conrelid and a.attnum = any(c.conkey)"
        " where c.conrelid = $1::regclass and c.contype = 'c' and a.attname = $2",
        table,
        column,
    )
    values: set[str] = set()
    for row in definitions:
        values |= set(re.findall(r"'([^']+)'::text", row["def"]))
    return values


async def test_intent_kinds(db: asyncpg.Pool) -> None:
    assert await _check_values(db, "public.agent_intents", "kind") == set(KINDS)


async def test_modes(db: asyncpg.Pool) -> None:
    # Every mode of the engine but handoff, which a playbook reaches through its own `handoff`
    # flag, never by name.
    for table, column in [
        ("public.agent_intents", "modes"),
        ("public.agent_intents", "next_mode"),
        ("public.agent_mode_transitions", "from_mode"),
        ("public.agent_mode_transitions", "to_mode"),
    ]:
        values = await _check_values(db, table, column)
        assert values == set(MODES) - {HANDOFF}, (table, column)


async def test_providers(db: asyncpg.Pool) -> None:
    values = await _check_values(db, "public.whatsapp_channels", "provider")
    assert values == set(typing.get_args(Provider))


async def test_outbox_kinds(db: asyncpg.Pool) -> None:
    values = await _check_values(db, "public.messages", "outbox_kind")
    assert values == set(typing.get_args(OutboxKind))
