"""devstack.workspaces against the real schema: a workspace is exactly the rows asked for, written
in one transaction that fails or rolls back as a whole."""

from __future__ import annotations

import uuid
from decimal import Decimal

import asyncpg
import pytest

from devstack.workspaces import Credentials, Member, add_workspace, create_user, create_workspace


def _name() -> str:
    return f"Tienda {uuid.uuid4().hex[:8]}"


async def _count(db: asyncpg.Pool, table: str, workspace_id: uuid.UUID) -> int:
    count: int = await db.fetchval(
        f"select count(*) from {table} where workspace_id = $1", workspace_id
    )
    return count


async def test_a_workspace_is_its_owner_and_one_meta_channel_and_nothing_else(
    db: asyncpg.Pool,
) -> None:
    name = _name()
    async with db.acquire() as conn:
        ws = await create_workspace(conn, name)

    row = await db.fetchrow("select * from public.workspaces where id = $1", ws.id)
    assert row is not None
    assert (row["name"], row["slug"], row["owner_id"]) == (name, ws.slug, ws.owner_id)
    assert ws.slug == f"{name.lower().replace(' ', '-')}-{ws.id}"
    owner = await db.fetchrow("select aud, role from auth.users where id = $1", ws.owner_id)
    assert owner is not None
    assert (owner["aud"], owner["role"]) == ("authenticated", "authenticated")
    members = await db.fetch(
        "select user_id, role from public.workspace_members where workspace_id = $1", ws.id
    )
    assert [(m["user_id"], m["role"]) for m in members] == [(ws.owner_id, "owner")]
    channels = await db.fetch(
        "select id, phone_number_id, provider, api_base_url from public.whatsapp_channels"
        " where workspace_id = $1",
        ws.id,
    )
    assert [tuple(c) for c in channels] == [(ws.channel_id, ws.phone_number_id, "meta", None)]
    assert ws.provider == "meta"
    assert ws.phone_number_id.isdigit()
    assert len(ws.phone_number_id) == 16
    assert not await db.fetchval(
        "select exists (select 1 from private.whatsapp_channel_credentials where channel_id = $1)",
        ws.channel_id,
    )
    assert await _count(db, "public.workspace_agent_config", ws.id) == 0
    assert await _count(db, "public.teams", ws.id) == 0
    assert (ws.members, ws.team_id) == ((), None)


async def test_the_channel_gets_the_provider_url_number_and_credentials_asked_for(
    db: asyncpg.Pool,
) -> None:
    pnid = str(uuid.uuid4().int)[:15]
    async with db.acquire() as conn:
        ws = await create_workspace(
            conn,
            _name(),
            provider="360dialog",
            phone_number_id=pnid,
            api_base_url="http://127.0.0.1:1/whatsapp/360dialog",
            credentials=Credentials(api_key="d360-key"),
        )
    channel = await db.fetchrow(
        "select * from public.whatsapp_channels where id = $1", ws.channel_id
    )
    assert channel is not None
    assert (channel["provider"], channel["phone_number_id"], channel["api_base_url"]) == (
        "360dialog",
        pnid,
        "http://127.0.0.1:1/whatsapp/360dialog",
    )
    assert (ws.provider, ws.phone_number_id) == ("360dialog", pnid)
    secrets = await db.fetchrow(
        "select access_token, api_key from private.whatsapp_channel_credentials"
        " where channel_id = $1",
        ws.channel_id,
    )
    assert secrets is not None
    assert tuple(secrets) == (None, "d360-key")


async def test_agent_config_has_the_columns_asked_for_and_the_table_defaults_for_the_rest(
    db: asyncpg.Pool,
) -> None:
    async with db.acquire() as conn:
        ws = await create_workspace(
            conn,
            _name(),
            agent={
                "agent_enabled": True,
                "conversational_agent_id": "diagnostic-v1",
                "response_speed": 0,
                "reply_window_ms": 1200,
            },
        )
        defaults = await create_workspace(conn, _name(), agent={})
    config = await db.fetchrow(
        "select * from public.workspace_agent_config where workspace_id = $1", ws.id
    )
    assert config is not None
    assert (
        config["agent_enabled"],
        config["conversational_agent_id"],
        config["response_speed"],
        config["reply_window_ms"],
        config["handoff_message"],
    ) == (
        True,
        "diagnostic-v1",
        Decimal("0.0"),
        1200,
        "Regálame 1 min, ya te comunico con un asesor",
    )
    config = await db.fetchrow(
        "select agent_enabled, conversational_agent_id from public.workspace_agent_config"
        " where workspace_id = $1",
        defaults.id,
    )
    assert config is not None
    assert tuple(config) == (False, "somnio-sales-v1")


async def test_members_get_their_roles_and_those_with_an_online_flag_join_the_team(
    db: asyncpg.Pool,
) -> None:
    async with db.acquire() as conn:
        ws = await create_workspace(
            conn,
            _name(),
            members=[Member("admin"), Member("agent", online=False), Member("agent", online=True)],
            team="Ventas",
        )
    admin, offline, online = ws.members
    roles = await db.fetch(
        "select user_id, role from public.workspace_members where workspace_id = $1", ws.id
    )
    assert {r["user_id"]: r["role"] for r in roles} == {
        ws.owner_id: "owner",
        admin: "admin",
        offline: "agent",
        online: "agent",
    }
    teams = await db.fetch("select id, name from public.teams where workspace_id = $1", ws.id)
    assert [tuple(t) for t in teams] == [(ws.team_id, "Ventas")]
    in_team = await db.fetch(
        "select user_id, is_online from public.team_members where team_id = $1", ws.team_id
    )
    assert {r["user_id"]: r["is_online"] for r in in_team} == {offline: False, online: True}


async def test_a_team_asked_for_is_made_even_if_nobody_joins_it(db: asyncpg.Pool) -> None:
    async with db.acquire() as conn:
        ws = await create_workspace(conn, _name(), team="Ventas")
    assert ws.team_id is not None
    assert await _count(db, "public.teams", ws.id) == 1
    assert (
        await db.fetchval("select count(*) from public.team_members where team_id = $1", ws.team_id)
        == 0
    )


@pytest.mark.parametrize(
    ("members", "agent", "refusal"),
    [
        ([Member("agent", online=True)], None, "need a team"),
        ([], {"agent_enabled = true; --": True}, "not a column name"),
    ],
)
async def test_a_request_it_cannot_write_is_refused_before_anything_is_written(
    db: asyncpg.Pool, members: list[Member], agent: dict[str, object] | None, refusal: str
) -> None:
    name = _name()
    async with db.acquire() as conn:
        with pytest.raises(ValueError, match=refusal):
            await create_workspace(conn, name, members=members, agent=agent)
    assert await db.fetchval("select count(*) from public.workspaces where name = $1", name) == 0


async def test_a_failure_part_way_leaves_nothing_behind(db: asyncpg.Pool) -> None:
    users = await db.fetchval("select count(*) from auth.users")
    async with db.acquire() as conn:
        taken = await create_workspace(conn, _name())
        name = _name()
        with pytest.raises(asyncpg.UniqueViolationError):
            await create_workspace(conn, name, phone_number_id=taken.phone_number_id)
    assert await db.fetchval("select count(*) from public.workspaces where name = $1", name) == 0
    assert await db.fetchval("select count(*) from auth.users") == users + 1


async def test_inside_the_callers_transaction_it_rolls_back_with_it(db: asyncpg.Pool) -> None:
    async with db.acquire() as conn:
        tx = conn.transaction()
        await tx.start()
        ws = await create_workspace(conn, _name(), members=[Member("agent")])
        await tx.rollback()
    assert await db.fetchval("select count(*) from public.workspaces where id = $1", ws.id) == 0
    assert (
        await db.fetchval(
            "select count(*) from auth.users where id = any($1)", [ws.owner_id, *ws.members]
        )
        == 0
    )


async def test_one_user_can_own_several_workspaces_and_a_bare_one_has_no_channel(
    db: asyncpg.Pool,
) -> None:
    async with db.acquire() as conn:
        owner = await create_user(conn)
        first = await create_workspace(conn, _name(), owner_id=owner)
        bare = await add_workspace(conn, _name(), owner)
    owned = await db.fetch("select id from public.workspaces where owner_id = $1", owner)
    assert {r["id"] for r in owned} == {first.id, bare}
    assert first.owner_id == owner
    memberships = await db.fetch(
        "select workspace_id, role from public.workspace_members where user_id = $1", owner
    )
    assert {(r["workspace_id"], r["role"]) for r in memberships} == {
        (first.id, "owner"),
        (bare, "owner"),
    }
    assert await _count(db, "public.whatsapp_channels", bare) == 0
