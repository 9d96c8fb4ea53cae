"""Bad input gets a clear SQL error (SQLSTATE, constraint or parameter named), never a wrong row."""

from __future__ import annotations

import uuid
from typing import Any
from uuid import UUID

import asyncpg
import pytest

from tests.fixtures.postgres import acting_as
from tests.supabase.tenancy import (
    Tenant,
    claims_for,
    create_conversation,
    create_tenant,
    random_phone,
    random_suffix,
)


@pytest.fixture(scope="module")
async def tenants(conn: asyncpg.Connection) -> tuple[Tenant, Tenant]:
    return await create_tenant(conn), await create_tenant(conn)


async def sqlstate_of(conn: asyncpg.Connection, sql: str, *args: Any) -> asyncpg.PostgresError:
    """Run `sql` in a rolled-back transaction and return the error it must raise."""
    tx = conn.transaction()
    await tx.start()
    try:
        with pytest.raises(asyncpg.PostgresError) as caught:
            await conn.execute(sql, *args)
        return caught.value
    finally:
        await tx.rollback()


# ---------------------------------------------------------------------------------------------
# assign_next_agent
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["service_role", "authenticated"])
async def test_assign_with_a_null_workspace_names_the_parameter(
    conn: asyncpg.Connection, tenants: tuple[Tenant, Tenant], role: str
) -> None:
    claims = claims_for(tenants[0].agent) if role == "authenticated" else {}
    async with acting_as(conn, role, claims):
        with pytest.raises(asyncpg.PostgresError) as caught:
            await conn.fetchval("select public.assign_next_agent(null)")
    assert caught.value.sqlstate == "22004"
    assert caught.value.message == "p_workspace_id must not be null"


async def test_assign_in_an_unknown_workspace_says_not_found(conn: asyncpg.Connection) -> None:
    missing = uuid.uuid4()
    async with acting_as(conn, "service_role"):
        with pytest.raises(asyncpg.PostgresError) as caught:
            await conn.fetchval("select public.assign_next_agent($1)", missing)
    assert caught.value.sqlstate == "P0002"
    assert caught.value.message == f"workspace {missing} not found"


async def test_assign_in_an_unknown_workspace_reveals_nothing_to_a_member(
    conn: asyncpg.Connection, tenants: tuple[Tenant, Tenant]
) -> None:
    async with acting_as(conn, "authenticated", claims_for(tenants[0].agent)):
        with pytest.raises(asyncpg.PostgresError) as caught:
            await conn.fetchval("select public.assign_next_agent($1)", uuid.uuid4())
    assert caught.value.sqlstate == "42501"


async def test_assign_with_a_malformed_id_is_a_type_error(conn: asyncpg.Connection) -> None:
    async with acting_as(conn, "service_role"):
        with pytest.raises(asyncpg.PostgresError) as caught:
            await conn.fetchval("select public.assign_next_agent('not-a-uuid')")
    assert caught.value.sqlstate == "22P02"


# ---------------------------------------------------------------------------------------------
# Rows that must be refused, each with the SQLSTATE and the constraint that says why
# ---------------------------------------------------------------------------------------------


async def test_contact_needs_a_phone_or_a_bsuid(
    conn: asyncpg.Connection, tenants: tuple[Tenant, Tenant]
) -> None:
    error = await sqlstate_of(
        conn,
        "insert into public.contacts (workspace_id, name) values ($1, 'Nobody')",
        tenants[0].workspace_id,
    )
    assert (error.sqlstate, error.constraint_name) == ("23514", "contacts_phone_or_bsuid_check")


async def test_conversation_needs_a_phone_or_a_bsuid(
    conn: asyncpg.Connection, tenants: tuple[Tenant, Tenant]
) -> None:
    error = await sqlstate_of(
        conn,
        "insert into public.conversations (workspace_id, phone_number_id) values ($1, 'p')",
        tenants[0].workspace_id,
    )
    assert (error.sqlstate, error.constraint_name) == (
        "23514",
        "conversations_phone_or_bsuid_check",
    )


# (constraint, sql with $1 = the home workspace and $2 = a row of the other workspace, which row)
CROSS_LINKS: list[tuple[str, str, str]] = [
    (
        "conversations_contact_fkey",
        "insert into public.conversations (workspace_id, contact_id, phone, phone_number_id)"
        " values ($1, $2, '571', 'p')",
        "contact_id",
    ),
    (
        "conversations_channel_fkey",
        "insert into public.conversations (workspace_id, channel_id, phone, phone_number_id)"
        " values ($1, $2, '571', 'p')",
        "channel_id",
    ),
    (
        "conversations_team_fkey",
        "insert into public.conversations (workspace_id, team_id, phone, phone_number_id)"
        " values ($1, $2, '571', 'p')",
        "team_id",
    ),
    (
        "messages_conversation_fkey",
        "insert into public.messages (workspace_id, conversation_id, direction, type)"
        " values ($1, $2, 'inbound', 'text')",
        "conversation_id",
    ),
    (
        "tasks_conversation_fkey",
        "insert into public.tasks (workspace_id, title, conversation_id) values ($1, 'T', $2)",
        "conversation_id",
    ),
    (
        "tasks_contact_fkey",
        "insert into public.tasks (workspace_id, title, contact_id) values ($1, 'T', $2)",
        "contact_id",
    ),
    (
        "agent_sessions_conversation_fkey",
        "insert into public.agent_sessions (workspace_id, agent_id, conversation_id)"
        " values ($1, 'a', $2)",
        "conversation_id",
    ),
    (
        "agent_sessions_contact_fkey",
        "insert into public.agent_sessions (workspace_id, agent_id, conversation_id, contact_id)"
        " select $1, 'b', c.id, $2 from public.conversations c where c.workspace_id = $1 limit 1",
        "contact_id",
    ),
    (
        "agent_turns_session_fkey",
        "insert into public.agent_turns (workspace_id, session_id, turn_number, role, content)"
        " values ($1, $2, 99, 'user', 'x')",
        "session_id",
    ),
]


@pytest.mark.parametrize(
    ("constraint", "sql", "field"), CROSS_LINKS, ids=[c[0] for c in CROSS_LINKS]
)
async def test_rows_cannot_link_another_workspaces_rows(
    conn: asyncpg.Connection,
    tenants: tuple[Tenant, Tenant],
    constraint: str,
    sql: str,
    field: str,
) -> None:
    home, other = tenants
    error = await sqlstate_of(conn, sql, home.workspace_id, getattr(other, field))
    assert (error.sqlstate, error.constraint_name) == ("23503", constraint)


# (sql with $1 = the home workspace and $2 = its conversation, the CHECK that refuses it)
OUT_OF_RANGE: list[tuple[str, str]] = [
    (
        "insert into public.messages (workspace_id, conversation_id, direction, type, status)"
        " values ($1, $2, 'outbound', 'text', 'bogus')",
        "messages_status_check",
    ),
    (
        "insert into public.messages (workspace_id, conversation_id, direction, type)"
        " values ($1, $2, 'sideways', 'text')",
        "messages_direction_check",
    ),
    (
        "update public.workspace_members set role = 'superadmin' where workspace_id = $1"
        " and $2::uuid is not null",
        "workspace_members_role_check",
    ),
    (
        "update public.whatsapp_channels set provider = 'twilio' where workspace_id = $1"
        " and $2::uuid is not null",
        "whatsapp_channels_provider_check",
    ),
    (
        "update public.workspace_agent_config set response_speed = -1 where workspace_id = $1"
        " and $2::uuid is not null",
        "workspace_agent_config_response_speed_check",
    ),
    (
        "update public.workspace_agent_config set timer_preset = 'slow'"
        " where workspace_id = $1 and $2::uuid is not null",
        "workspace_agent_config_timer_preset_check",
    ),
    (
        "update public.team_members set max_open_handoffs = -1"
        " where team_id in (select id from public.teams where workspace_id = $1)"
        " and $2::uuid is not null",
        "team_members_max_open_handoffs_check",
    ),
    (
        "update public.tasks set priority = 'urgent' where workspace_id = $1"
        " and $2::uuid is not null",
        "tasks_priority_check",
    ),
    (
        "update public.agent_sessions set status = 'zombie' where workspace_id = $1"
        " and $2::uuid is not null",
        "agent_sessions_status_check",
    ),
    (
        "update public.conversations set status = 'deleted' where workspace_id = $1"
        " and $2::uuid is not null",
        "conversations_status_check",
    ),
]


@pytest.mark.parametrize(("sql", "constraint"), OUT_OF_RANGE, ids=[c[1] for c in OUT_OF_RANGE])
async def test_out_of_range_values_are_refused(
    conn: asyncpg.Connection, tenants: tuple[Tenant, Tenant], sql: str, constraint: str
) -> None:
    home, _ = tenants
    error = await sqlstate_of(conn, sql, home.workspace_id, home.conversation_id)
    assert (error.sqlstate, error.constraint_name) == ("23514", constraint)


async def test_duplicates_are_refused_by_their_unique_keys(
    conn: asyncpg.Connection, tenants: tuple[Tenant, Tenant]
) -> None:
    home, other = tenants
    wamid = await conn.fetchval("select wamid from public.messages where id = $1", home.message_id)
    pnid = await conn.fetchval(
        "select phone_number_id from public.whatsapp_channels where id = $1", home.channel_id
    )
    phone = await conn.fetchval(
        "select phone from public.conversations where id = $1", home.conversation_id
    )
    cases: list[tuple[str, tuple[Any, ...], str]] = [
        (
            # A wamid is unique across workspaces, not just within one.
            "insert into public.messages (workspace_id, conversation_id, wamid, direction, type)"
            " values ($1, $2, $3, 'inbound', 'text')",
            (other.workspace_id, other.conversation_id, wamid),
            "messages_wamid_key",
        ),
        (
            "insert into public.whatsapp_channels (workspace_id, phone_number_id) values ($1, $2)",
            (other.workspace_id, pnid),
            "whatsapp_channels_phone_number_id_key",
        ),
        (
            "insert into public.conversations (workspace_id, phone, phone_number_id)"
            " values ($1, $2, 'p')",
            (home.workspace_id, phone),
            "conversations_workspace_id_phone_key",
        ),
        (
            "insert into public.agent_sessions (workspace_id, agent_id, conversation_id)"
            " values ($1, 'somnio-sales-v1', $2)",
            (home.workspace_id, home.conversation_id),
            "agent_sessions_one_active_key",
        ),
        (
            "insert into public.agent_turns (session_id, turn_number, role, content)"
            " values ($1, 1, 'user', 'again')",
            (home.session_id,),
            "agent_turns_session_id_turn_number_key",
        ),
        (
            "insert into public.workspace_members (workspace_id, user_id) values ($1, $2)",
            (home.workspace_id, home.agent),
            "workspace_members_workspace_id_user_id_key",
        ),
    ]
    for sql, args, constraint in cases:
        error = await sqlstate_of(conn, sql, *args)
        assert (error.sqlstate, error.constraint_name) == ("23505", constraint), sql


async def test_a_turn_for_an_unknown_session_says_so(conn: asyncpg.Connection) -> None:
    missing = uuid.uuid4()
    error = await sqlstate_of(
        conn,
        "insert into public.agent_turns (session_id, turn_number, role, content)"
        " values ($1, 1, 'user', 'x')",
        missing,
    )
    assert error.sqlstate == "23503"
    assert error.message == f"agent session {missing} not found"


async def test_a_turn_for_an_invisible_session_is_refused_for_a_member(
    conn: asyncpg.Connection, tenants: tuple[Tenant, Tenant]
) -> None:
    home, other = tenants
    async with acting_as(conn, "authenticated", claims_for(home.agent)):
        with pytest.raises(asyncpg.PostgresError) as caught:
            await conn.execute(
                "insert into public.agent_turns (session_id, turn_number, role, content)"
                " values ($1, 50, 'user', 'x')",
                other.session_id,
            )
    assert caught.value.sqlstate == "23503"


# ---------------------------------------------------------------------------------------------
# Input that must be accepted (the original system rejected it)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("type_", ["button", "unsupported", "order", "system", "a_future_type"])
async def test_any_whatsapp_message_type_is_stored(
    conn: asyncpg.Connection, tenants: tuple[Tenant, Tenant], type_: str
) -> None:
    home, _ = tenants
    stored = await conn.fetchval(
        "insert into public.messages (workspace_id, conversation_id, wamid, direction, type)"
        " values ($1, $2, $3, 'inbound', $4) returning type",
        home.workspace_id,
        home.conversation_id,
        "wamid." + random_suffix(),
        type_,
    )
    assert stored == type_


async def test_a_handoff_task_links_both_conversation_and_contact(
    conn: asyncpg.Connection, tenants: tuple[Tenant, Tenant]
) -> None:
    home, _ = tenants
    row = await conn.fetchrow(
        "insert into public.tasks (workspace_id, title, type, priority, conversation_id,"
        " contact_id) values ($1, 'Handoff', 'handoff', 'high', $2, $3)"
        " returning conversation_id, contact_id",
        home.workspace_id,
        home.conversation_id,
        home.contact_id,
    )
    assert row is not None
    assert (row["conversation_id"], row["contact_id"]) == (home.conversation_id, home.contact_id)


async def test_customers_known_only_by_bsuid_are_stored(
    conn: asyncpg.Connection, tenants: tuple[Tenant, Tenant]
) -> None:
    home, _ = tenants
    bsuid = "CO." + random_suffix()
    contact_id: UUID = await conn.fetchval(
        "insert into public.contacts (workspace_id, name, bsuid) values ($1, 'B', $2) returning id",
        home.workspace_id,
        bsuid,
    )
    conversation_id = await conn.fetchval(
        "insert into public.conversations (workspace_id, contact_id, bsuid, phone_number_id)"
        " values ($1, $2, $3, 'p') returning id",
        home.workspace_id,
        contact_id,
        bsuid,
    )
    assert conversation_id is not None
    # The same phone may exist in two workspaces.
    phone = random_phone()
    for workspace_id in (home.workspace_id, tenants[1].workspace_id):
        await conn.execute(
            "insert into public.contacts (workspace_id, name, phone) values ($1, 'P', $2)",
            workspace_id,
            phone,
        )


async def test_a_new_session_may_start_after_a_handoff(
    conn: asyncpg.Connection, tenants: tuple[Tenant, Tenant]
) -> None:
    home, _ = tenants
    conversation_id = await create_conversation(conn, home.workspace_id)
    insert = (
        "insert into public.agent_sessions (workspace_id, agent_id, conversation_id)"
        " values ($1, 'somnio-sales-v1', $2) returning id"
    )
    first = await conn.fetchval(insert, home.workspace_id, conversation_id)
    await conn.execute(
        "update public.agent_sessions set status = 'handed_off' where id = $1", first
    )
    second = await conn.fetchval(insert, home.workspace_id, conversation_id)
    assert second != first
