"""A customer's conversation and contact are found by BSUID first, then by phone, within the
workspace (`private.find_conversation`, `private.find_contact`), as the intake and the turn
look them up."""

from __future__ import annotations

from uuid import UUID

import asyncpg
import pytest

from tests.supabase.tenancy import create_tenant, random_phone, random_suffix


@pytest.mark.parametrize("table", ["conversations", "contacts"])
async def test_the_bsuid_match_wins_over_the_phone_match(
    conn: asyncpg.Connection, table: str
) -> None:
    home, other = await create_tenant(conn), await create_tenant(conn)
    find = "private.find_conversation" if table == "conversations" else "private.find_contact"
    extra = ", phone_number_id" if table == "conversations" else ", name"

    async def add(workspace_id: UUID, phone: str | None, bsuid: str | None) -> UUID:
        row_id: UUID = await conn.fetchval(
            f"insert into public.{table} (workspace_id, phone, bsuid{extra})"
            " values ($1, $2, $3, 'x') returning id",
            workspace_id,
            phone,
            bsuid,
        )
        return row_id

    async def found(workspace_id: UUID, bsuid: str | None, phone: str | None) -> UUID | None:
        row_id: UUID | None = await conn.fetchval(
            f"select {find}($1, $2, $3)", workspace_id, bsuid, phone
        )
        return row_id

    phone, other_phone, bsuid = random_phone(), random_phone(), "CO." + random_suffix()
    by_phone = await add(home.workspace_id, phone, None)
    by_bsuid = await add(home.workspace_id, other_phone, bsuid)
    elsewhere = await add(other.workspace_id, phone, bsuid)

    assert await found(home.workspace_id, bsuid, phone) == by_bsuid
    assert await found(home.workspace_id, None, phone) == by_phone
    assert await found(home.workspace_id, "CO.unknown", phone) == by_phone
    assert await found(home.workspace_id, bsuid, None) == by_bsuid
    assert await found(home.workspace_id, None, random_phone()) is None
    assert await found(home.workspace_id, None, None) is None
    assert await found(other.workspace_id, bsuid, other_phone) == elsewhere
