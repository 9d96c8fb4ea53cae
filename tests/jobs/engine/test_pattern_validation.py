"""Intent patterns are checked on write, as a workspace admin writes them through PostgREST:
what RE2 cannot match is refused with an error that says why; the seed's patterns pass."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from jobs.engine.playbook import Playbook
from tests.fixtures.postgres import acting_as
from tests.supabase.tenancy import claims_for, create_member, create_user, create_workspace

INSERT = (
    "insert into public.agent_intents (agent_id, workspace_id, intent, patterns)"
    " values ('somnio-sales-v1', $1, 'precio', $2)"
)


@pytest.fixture
async def conn(database_url: str, seeded_db: asyncpg.Pool) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(database_url)
    try:
        yield connection
    finally:
        await connection.close()


async def _admin(conn: asyncpg.Connection) -> tuple[uuid.UUID, uuid.UUID]:
    owner = await create_user(conn)
    workspace_id = await create_workspace(conn, owner)
    return workspace_id, await create_member(conn, workspace_id, "admin")


@pytest.mark.parametrize(
    ("patterns", "message"),
    [
        ([r"(\w+) \1"], r"patterns\[1\] uses a backreference"),
        ([r"ok", r"(?P<x>a)(?P=x)"], r"patterns\[2\] uses a backreference"),
        ([r"precio(?=s)"], "uses lookaround"),
        ([r"(?<=el )dos"], "uses lookaround"),
        ([r"(?<!\w)a(?!\w)b"], "uses lookaround"),
        ([r"(?>a+)b"], "atomic group"),
        (["a" * 501], "longer than 500 characters"),
        ([" "], "is empty"),
        ([f"p{i}" for i in range(21)], "at most 20 patterns per rule"),
    ],
)
async def test_patterns_re2_cannot_match_are_refused_on_write(
    conn: asyncpg.Connection, patterns: list[str], message: str
) -> None:
    workspace_id, admin = await _admin(conn)
    async with acting_as(conn, "authenticated", claims_for(admin)):
        with pytest.raises(asyncpg.CheckViolationError, match=message) as raised:
            await conn.execute(INSERT, workspace_id, patterns)
    assert "RE2" in (raised.value.hint or "") or "20 patterns" in message


async def test_an_update_is_checked_too(conn: asyncpg.Connection) -> None:
    workspace_id, admin = await _admin(conn)
    async with acting_as(conn, "authenticated", claims_for(admin)):
        await conn.execute(INSERT, workspace_id, [r"\bprecio\b"])
        with pytest.raises(asyncpg.CheckViolationError, match="backreference"):
            await conn.execute(
                "update public.agent_intents set patterns = $2 where workspace_id = $1",
                workspace_id,
                [r"(a)\1"],
            )


async def test_what_re2_matches_is_accepted_hostile_or_not(
    conn: asyncpg.Connection, playbook: Playbook
) -> None:
    # ^(a+)+$ stalls a backtracking engine, not RE2: it is allowed, and harmless.
    accepted = [
        r"^(a+)+$",
        r"(?<!\w)j[aeiou]j[aeiouj]*(?!\w)",  # whole-word guards at the edges
        r"\(?!\w\)",  # escaped: no lookaround
        r"\\1",  # an escaped backslash and a 1: no backreference
        *[p for rule in playbook.rules for p in rule.patterns][:20],
    ]
    workspace_id, admin = await _admin(conn)
    async with acting_as(conn, "authenticated", claims_for(admin)):
        for i in range(0, len(accepted), 20):
            await conn.execute(INSERT, workspace_id, accepted[i : i + 20])
