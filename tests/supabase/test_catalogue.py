"""The schema's own rules, read from the system catalogue (the checks Supabase's linter makes,
and a few of ours): RLS everywhere, pinned search paths, no execute rights leaking, policy
naming, the frontend's contract columns and the realtime publication."""

from __future__ import annotations

import re

import asyncpg
import pytest

from tests.fixtures.postgres import acting_as

# Private functions the API roles must be able to run: the membership checks run inside
# policies as the caller, the round-robin body behind public.assign_next_agent, and the bodies
# of the members' send RPCs (public.send_message, send_template, resume_bot).
AUTHENTICATED_PRIVATE_FUNCTIONS = {
    "private.is_workspace_member(uuid)",
    "private.is_workspace_admin(uuid)",
    "private.is_workspace_owner(uuid)",
    "private.workspace_of_team(uuid)",
    "private.assign_next_agent(uuid)",
    "private.send_message(uuid,text)",
    "private.send_template(uuid,text,text,jsonb)",
    "private.resume_bot(uuid)",
}

# Columns the existing frontend and the bridge rely on (DESIGN.md, "Contract").
CONTRACT_COLUMNS: dict[str, set[str]] = {
    "workspaces": {"id", "name", "slug", "owner_id", "settings", "created_at", "updated_at"},
    "workspace_members": {"id", "workspace_id", "user_id", "role"},
    "contacts": {
        "id",
        "workspace_id",
        "name",
        "phone",
        "bsuid",
        "email",
        "address",
        "city",
        "custom_fields",
        "created_at",
        "updated_at",
    },
    "conversations": {
        "id",
        "workspace_id",
        "channel_id",
        "contact_id",
        "phone",
        "bsuid",
        "phone_number_id",
        "profile_name",
        "status",
        "is_read",
        "unread_count",
        "last_customer_message_at",
        "last_message_at",
        "last_message_preview",
        "assigned_to",
        "team_id",
        "agent_conversational",
        "agent_crm",
        "created_at",
        "updated_at",
    },
    "messages": {
        "id",
        "workspace_id",
        "conversation_id",
        "wamid",
        "direction",
        "type",
        "content",
        "status",
        "status_timestamp",
        "error_code",
        "error_message",
        "timestamp",
        "sent_by_agent",
        "processed_by_agent",
        "context_wamid",
        "created_at",
    },
    "tasks": {
        "id",
        "workspace_id",
        "title",
        "description",
        "due_date",
        "priority",
        "status",
        "type",
        "conversation_id",
        "contact_id",
        "assigned_to",
        "created_by",
        "completed_at",
        "created_at",
        "updated_at",
    },
    "teams": {"id", "workspace_id", "name", "is_default"},
    "team_members": {
        "id",
        "team_id",
        "user_id",
        "is_online",
        "last_assigned_at",
        "max_open_handoffs",
    },
    "workspace_agent_config": {
        "workspace_id",
        "agent_enabled",
        "conversational_agent_id",
        "crm_agents_enabled",
        "handoff_message",
        "timer_preset",
        "response_speed",
        "reply_window_ms",
        "whatsapp_typing_indicator",
        "created_at",
        "updated_at",
    },
    "agent_sessions": {
        "id",
        "agent_id",
        "conversation_id",
        "contact_id",
        "workspace_id",
        "version",
        "status",
        "current_mode",
        "state",
        "closed_at",
        "close_reason",
        "created_at",
        "updated_at",
        "last_activity_at",
    },
    "agent_turns": {
        "id",
        "workspace_id",
        "session_id",
        "turn_number",
        "role",
        "content",
        "intent_detected",
        "confidence",
        "tools_called",
        "tokens_used",
        "created_at",
    },
    "whatsapp_channels": {
        "id",
        "workspace_id",
        "phone_number_id",
        "display_phone_number",
        "provider",
        "api_base_url",
        "created_at",
        "updated_at",
    },
    "whatsapp_webhook_events": {
        "id",
        "workspace_id",
        "provider",
        "phone_number_ids",
        "event_type",
        "wa_message_ids",
        "payload",
        "status",
        "error_message",
        "processed_at",
        "created_at",
    },
}

REALTIME_TABLES = {
    "conversations",
    "messages",
    "tasks",
    "teams",
    "team_members",
    "agent_sessions",
    "contacts",
}

POLICY_NAME = re.compile(
    r"^(?P<table>[a-z_]+)_(?P<role>authenticated|service_role)_"
    r"(?P<op>select|insert|update|delete)(_[a-z_]+)?$"
)


async def test_every_table_in_exposed_and_private_schemas_has_rls(
    conn: asyncpg.Connection,
) -> None:
    rows = await conn.fetch(
        "select n.nspname || '.' || c.relname as name from pg_class c"
        " join pg_namespace n on n.oid = c.relnamespace"
        " where n.nspname in ('public', 'private') and c.relkind in ('r', 'p')"
        " and not c.relrowsecurity"
    )
    assert [r["name"] for r in rows] == []


async def test_every_table_and_contract_column_is_documented_or_present(
    conn: asyncpg.Connection,
) -> None:
    undocumented = await conn.fetch(
        "select c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace"
        " where n.nspname = 'public' and c.relkind in ('r', 'p')"
        " and obj_description(c.oid, 'pg_class') is null"
    )
    assert [r["relname"] for r in undocumented] == []
    rows = await conn.fetch(
        "select table_name, column_name from information_schema.columns"
        " where table_schema = 'public'"
    )
    present: dict[str, set[str]] = {}
    for r in rows:
        present.setdefault(r["table_name"], set()).add(r["column_name"])
    missing = {t: cols - present.get(t, set()) for t, cols in CONTRACT_COLUMNS.items()}
    assert {t: cols for t, cols in missing.items() if cols} == {}


async def test_functions_pin_an_empty_search_path(conn: asyncpg.Connection) -> None:
    rows = await conn.fetch(
        "select p.oid::regprocedure::text as name, p.prosecdef, p.proconfig"
        " from pg_proc p join pg_namespace n on n.oid = p.pronamespace"
        " where n.nspname in ('public', 'private')"
        " and not exists (select 1 from pg_depend d where d.objid = p.oid and d.deptype = 'e')"
    )
    assert rows, "the schema defines functions"
    unpinned = [r["name"] for r in rows if 'search_path=""' not in (r["proconfig"] or [])]
    assert unpinned == []
    definers = {r["name"] for r in rows if r["prosecdef"]}
    assert "private.assign_next_agent(uuid)" in definers
    # SECURITY DEFINER code lives only in the unexposed schema.
    assert {d for d in definers if not d.startswith("private.")} == set()


async def test_private_functions_are_not_executable_by_public_or_anon(
    conn: asyncpg.Connection,
) -> None:
    rows = await conn.fetch(
        "select p.oid::regprocedure::text as name,"
        " has_function_privilege('anon', p.oid, 'execute') as anon,"
        " has_function_privilege('authenticated', p.oid, 'execute') as authenticated,"
        " exists (select 1 from aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a"
        "         where a.grantee = 0 and a.privilege_type = 'EXECUTE') as public"
        " from pg_proc p join pg_namespace n on n.oid = p.pronamespace"
        " where n.nspname = 'private'"
    )
    assert [r["name"] for r in rows if r["public"]] == []
    assert [r["name"] for r in rows if r["anon"]] == []
    assert {r["name"] for r in rows if r["authenticated"]} == AUTHENTICATED_PRIVATE_FUNCTIONS
    assert not await conn.fetchval("select has_schema_privilege('anon', 'private', 'usage')")


@pytest.mark.parametrize("function", sorted(AUTHENTICATED_PRIVATE_FUNCTIONS))
async def test_anon_cannot_call_private_functions(conn: asyncpg.Connection, function: str) -> None:
    name, _, types = function.rstrip(")").partition("(")
    args = ", ".join("gen_random_uuid()" if t == "uuid" else f"null::{t}" for t in types.split(","))
    call = f"{name}({args})"
    async with acting_as(conn, "anon"):
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.fetchval(f"select {call}")


async def test_authenticated_cannot_call_internal_private_functions(
    conn: asyncpg.Connection,
) -> None:
    rows = await conn.fetch(
        "select p.oid::regprocedure::text as name from pg_proc p"
        " join pg_namespace n on n.oid = p.pronamespace"
        " where n.nspname = 'private' and not has_function_privilege('authenticated', p.oid,"
        " 'execute') and p.prorettype <> 'trigger'::regtype and p.pronargs = 1"
        " and p.proargtypes[0] = 'uuid'::regtype"
    )
    for row in rows:
        call = row["name"].replace("(uuid)", "(gen_random_uuid())")
        async with acting_as(
            conn, "authenticated", {"sub": "00000000-0000-0000-0000-000000000000"}
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.fetchval(f"select {call}")


async def test_policies_are_per_role_per_operation_and_never_for_anon(
    conn: asyncpg.Connection,
) -> None:
    rows = await conn.fetch(
        "select schemaname, tablename, policyname, roles::text[] as roles, cmd"
        " from pg_policies where schemaname in ('public', 'private')"
    )
    assert rows
    wrong: list[str] = []
    for r in rows:
        name = r["policyname"]
        if r["roles"] != ["authenticated"] and r["roles"] != ["service_role"]:
            wrong.append(f"{name}: roles {r['roles']}")
        if r["cmd"] == "ALL":
            wrong.append(f"{name}: FOR ALL")
        match = POLICY_NAME.match(name)
        if not match or not name.startswith(r["tablename"] + "_"):
            wrong.append(f"{name}: not <table>_<role>_<op>[_<scope>]")
        elif match["op"] != r["cmd"].lower():
            wrong.append(f"{name}: named {match['op']} but is {r['cmd']}")
    assert wrong == []


async def test_api_roles_cannot_truncate_or_reach_private_tables(conn: asyncpg.Connection) -> None:
    truncatable = await conn.fetch(
        "select c.relname, r.rolname from pg_class c join pg_namespace n on n.oid = c.relnamespace"
        " cross join (values ('anon'), ('authenticated')) r(rolname)"
        " where n.nspname = 'public' and c.relkind = 'r'"
        " and has_table_privilege(r.rolname, c.oid, 'truncate')"
    )
    assert [(r["relname"], r["rolname"]) for r in truncatable] == []
    reachable = await conn.fetch(
        "select c.relname, r.rolname from pg_class c join pg_namespace n on n.oid = c.relnamespace"
        " cross join (values ('anon'), ('authenticated')) r(rolname)"
        " where n.nspname = 'private' and c.relkind = 'r'"
        " and (has_table_privilege(r.rolname, c.oid, 'select')"
        "      or has_table_privilege(r.rolname, c.oid, 'insert')"
        "      or has_table_privilege(r.rolname, c.oid, 'update'))"
    )
    assert [(r["relname"], r["rolname"]) for r in reachable] == []
    assert await conn.fetchval(
        "select has_table_privilege('service_role', 'private.whatsapp_channel_credentials',"
        " 'select')"
    )


async def test_assign_next_agent_is_an_rpc_for_admins_and_the_service_role_only(
    conn: asyncpg.Connection,
) -> None:
    row = await conn.fetchrow(
        "select has_function_privilege('anon', f, 'execute') as anon,"
        " has_function_privilege('authenticated', f, 'execute') as authenticated,"
        " has_function_privilege('service_role', f, 'execute') as service_role,"
        " p.prosecdef, p.provolatile::text as provolatile"
        " from (select 'public.assign_next_agent(uuid)'::regprocedure as f) x"
        " join pg_proc p on p.oid = x.f"
    )
    assert row is not None
    # authenticated: its body refuses anyone but the workspace's owners and admins.
    assert (row["anon"], row["authenticated"], row["service_role"]) == (False, True, True)
    assert row["prosecdef"] is False  # the privileged body is private.assign_next_agent
    assert row["provolatile"] == "v"  # PostgREST calls it with POST


async def test_timestamps_default_to_now_never_a_local_time(conn: asyncpg.Connection) -> None:
    rows = await conn.fetch(
        "select table_name, column_name, column_default from information_schema.columns"
        " where table_schema = 'public' and data_type like 'timestamp%'"
        " and column_default is not null"
    )
    assert rows
    assert [
        (r["table_name"], r["column_name"], r["column_default"])
        for r in rows
        if r["column_default"] != "now()"
    ] == []
    naive = await conn.fetch(
        "select table_name, column_name from information_schema.columns"
        " where table_schema = 'public' and data_type = 'timestamp without time zone'"
    )
    assert [(r["table_name"], r["column_name"]) for r in naive] == []


async def test_realtime_publishes_the_live_tables_with_full_rows(conn: asyncpg.Connection) -> None:
    published = await conn.fetch(
        "select tablename from pg_publication_tables"
        " where pubname = 'supabase_realtime' and schemaname = 'public'"
    )
    assert {r["tablename"] for r in published} >= REALTIME_TABLES
    identity = await conn.fetch(
        "select c.relname, c.relreplident::text as relreplident from pg_class c"
        " where c.oid = any($1::regclass[])",
        [f"public.{t}" for t in REALTIME_TABLES],
    )
    assert {r["relname"]: r["relreplident"] for r in identity} == dict.fromkeys(
        REALTIME_TABLES, "f"
    )


async def test_every_updated_at_column_is_maintained_by_a_trigger(
    conn: asyncpg.Connection,
) -> None:
    rows = await conn.fetch(
        "select c.table_schema || '.' || c.table_name as name from information_schema.columns c"
        " where c.table_schema in ('public', 'private') and c.column_name = 'updated_at'"
        " and not exists (select 1 from pg_trigger t"
        "   where t.tgrelid = (quote_ident(c.table_schema) || '.' || quote_ident(c.table_name))"
        "::regclass"
        "   and t.tgfoid = 'private.set_updated_at()'::regprocedure)"
    )
    assert [r["name"] for r in rows] == []


# A foreign key is covered by an index whose leading columns are columns of the key that pick
# one referenced row (the whole key, or a part unique in the referenced table: contact_id of
# (contact_id, workspace_id)). A partial index counts when it only leaves out nulls.
_UNINDEXED_FOREIGN_KEYS = """
select fk.conrelid::regclass::text || ' ' || fk.conname as foreign_key
  from pg_catalog.pg_constraint fk
  join pg_catalog.pg_class t on t.oid = fk.conrelid
  join pg_catalog.pg_namespace n on n.oid = t.relnamespace
 where fk.contype = 'f' and n.nspname in ('public', 'private')
   and not exists (
     select 1
       from pg_catalog.pg_index i
       cross join lateral generate_series(1, i.indnkeyatts) k
      where i.indrelid = fk.conrelid and i.indisvalid
        and (i.indpred is null or pg_catalog.pg_get_expr(i.indpred, i.indrelid) in (
              select format('(%I IS NOT NULL)', a.attname) from pg_catalog.pg_attribute a
               where a.attrelid = fk.conrelid and a.attnum = any(fk.conkey)))
        and (i.indkey::int2[])[0:k - 1] <@ fk.conkey
        and exists (
          select 1 from pg_catalog.pg_index u
           where u.indrelid = fk.confrelid and u.indisunique and u.indpred is null
             and (u.indkey::int2[])[0:u.indnkeyatts - 1] <@ array(
               select fk.confkey[p] from generate_subscripts(fk.conkey, 1) p
                where fk.conkey[p] = any((i.indkey::int2[])[0:k - 1]))))
 order by 1
"""


async def test_every_foreign_key_has_an_index(conn: asyncpg.Connection) -> None:
    # Deleting or re-keying a referenced row looks up its referencing rows by the key: without
    # an index, a scan of the whole referencing table.
    assert await conn.fetchval(
        "select count(*) from pg_constraint c join pg_namespace n on n.oid = c.connamespace"
        " where c.contype = 'f' and n.nspname in ('public', 'private')"
    )
    assert [r["foreign_key"] for r in await conn.fetch(_UNINDEXED_FOREIGN_KEYS)] == []


async def test_channel_credentials_hold_only_what_the_worker_uses(
    conn: asyncpg.Connection,
) -> None:
    """A credential column nothing reads is a false promise: an operator who stored a channel's
    own webhook secret there would believe it was checked. Webhooks are verified with the
    operator's per-provider secrets only."""
    columns = await conn.fetch(
        "select column_name from information_schema.columns"
        " where table_schema = 'private' and table_name = 'whatsapp_channel_credentials'"
        " order by ordinal_position"
    )
    assert [c["column_name"] for c in columns] == [
        "channel_id",
        "access_token",
        "api_key",
        "created_at",
        "updated_at",
    ]
