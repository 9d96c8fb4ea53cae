"""Who may read and edit the playbook tables, as PostgREST would run the request."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from tests.fixtures.postgres import acting_as
from tests.supabase.tenancy import claims_for, create_member, create_user, create_workspace

TABLES = ("agent_intents", "agent_templates", "agent_mode_transitions", "agent_playbook_settings")

INSERTS = {
    "agent_intents": "insert into public.agent_intents (agent_id, workspace_id, intent, keywords)"
    " values ('somnio-sales-v1', $1, 'precio', '{precio}')",
    "agent_templates": "insert into public.agent_templates (agent_id, workspace_id, intent,"
    " content, orden) values ('somnio-sales-v1', $1, 'precio', 'x', 90)",
    "agent_mode_transitions": "insert into public.agent_mode_transitions (agent_id, workspace_id,"
    " from_mode, to_mode) values ('somnio-sales-v1', $1, 'resumen', 'conversacion')",
    "agent_playbook_settings": "insert into public.agent_playbook_settings (agent_id,"
    " workspace_id, product_name) values ('rls-test-v1', $1, 'X')",
}


async def visible(conn: asyncpg.Connection, table: str, workspace_id: uuid.UUID | None) -> int:
    count: int = await conn.fetchval(
        f"select count(*) from public.{table} where workspace_id is not distinct from $1",
        workspace_id,
    )
    return count


async def refused(conn: asyncpg.Connection, sql: str, *args: object) -> None:
    """`sql` fails for lack of privilege; a savepoint keeps the transaction usable."""
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        async with conn.transaction():
            await conn.execute(sql, *args)


@pytest.fixture
async def conn(database_url: str, seeded_db: asyncpg.Pool) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(database_url)
    try:
        yield connection
    finally:
        await connection.close()


@pytest.mark.parametrize("table", TABLES)
async def test_members_read_their_rows_and_the_defaults_admins_write_theirs(
    conn: asyncpg.Connection, table: str
) -> None:
    owner = await create_user(conn)
    workspace_id = await create_workspace(conn, owner)
    admin = await create_member(conn, workspace_id, "admin")
    agent = await create_member(conn, workspace_id, "agent")
    other_owner = await create_user(conn)
    other_workspace = await create_workspace(conn, other_owner)
    await conn.execute(INSERTS[table], other_workspace)

    async with acting_as(conn, "authenticated", claims_for(agent)):
        assert await visible(conn, table, None) > 0  # the global defaults
        assert await visible(conn, table, other_workspace) == 0
        await refused(conn, INSERTS[table], workspace_id)

    for editor in (owner, admin):
        async with acting_as(conn, "authenticated", claims_for(editor)):
            await conn.execute(INSERTS[table], workspace_id)
            assert await visible(conn, table, workspace_id) == 1
            changed = await conn.execute(
                f"update public.{table} set created_at = created_at where workspace_id is null"
            )
            assert changed == "UPDATE 0"  # defaults are not editable through the API
            await refused(conn, INSERTS[table], None)
            await refused(conn, INSERTS[table], other_workspace)

    async with acting_as(conn, "anon"):
        await refused(conn, f"select count(*) from public.{table}")
