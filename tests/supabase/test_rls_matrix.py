"""Row level security as a matrix read from the catalogue: every table of `public` (as
pg_catalog lists it) by every kind of caller by select/insert/update/delete, against one row of a
workspace, each run as PostgREST would run it; plus every function and sequence the API roles
can use. A table, function or sequence added to the schema fails here until its expectations
are stated below.

How each operation is tried, the same way for every table (rolled back afterwards):
- select, update and delete target the row named in the table's `Expect` (update sets one
  column the `authenticated` role may update to itself, any column when there is none);
- insert copies that row's values that have no column default (ids and timestamps come fresh),
  so privileges, policies and the guard triggers decide. An error raised after them (a unique
  key, a check) still counts as allowed: the caller got past every access rule.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import asyncpg
import pytest

from tests.fixtures.postgres import acting_as
from tests.supabase.tenancy import Tenant, claims_for, create_tenant, random_suffix

Op = Literal["select", "insert", "update", "delete"]
OPS: tuple[Op, ...] = ("select", "insert", "update", "delete")

# Who tries: nobody signed in, a signed-in user of no workspace, an agent and the owner of another
# workspace, and the workspace's own agent, admin and owner.
ACTORS = ("anon", "outsider", "other_agent", "other_owner", "agent", "admin", "owner")

MEMBERS = frozenset({"agent", "admin", "owner"})
ADMINS = frozenset({"admin", "owner"})
OWNER = frozenset({"owner"})
NOBODY: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Rows:
    """The workspace the matrix targets: its tenant rows and the ones only the matrix makes."""

    tenant: Tenant
    extra: dict[str, Any]  # table -> id of the workspace's row in it


@dataclass(frozen=True)
class Expect:
    """Which callers reach the table's row, per operation. `row` names it: (key column, value)."""

    row: Callable[[Rows], tuple[str, Any]]
    select: frozenset[str]
    insert: frozenset[str]
    update: frozenset[str]
    delete: frozenset[str]

    def allowed(self, op: Op) -> frozenset[str]:
        allowed: frozenset[str] = getattr(self, op)
        return allowed


def _extra(table: str) -> Callable[[Rows], tuple[str, Any]]:
    return lambda r: ("id", r.extra[table])


EXPECTED: dict[str, Expect] = {
    "workspaces": Expect(
        row=lambda r: ("id", r.tenant.workspace_id),
        select=MEMBERS,
        insert=OWNER,  # anyone creates a workspace, but only one they own
        update=OWNER,
        delete=OWNER,
    ),
    "workspace_members": Expect(
        row=lambda r: ("id", r.tenant.membership_id),  # another agent's membership
        select=MEMBERS,
        insert=ADMINS,
        update=ADMINS,
        delete=ADMINS,
    ),
    "whatsapp_channels": Expect(
        row=lambda r: ("id", r.tenant.channel_id),
        select=MEMBERS,
        insert=ADMINS,
        update=ADMINS,
        delete=ADMINS,
    ),
    "contacts": Expect(
        row=lambda r: ("id", r.tenant.contact_id),
        select=MEMBERS,
        insert=MEMBERS,
        update=MEMBERS,
        delete=MEMBERS,
    ),
    "teams": Expect(
        row=lambda r: ("id", r.tenant.team_id),
        select=MEMBERS,
        insert=ADMINS,
        update=ADMINS,
        delete=ADMINS,
    ),
    "team_members": Expect(
        row=lambda r: ("id", r.tenant.team_member_id),  # another agent's: not `agent`'s to touch
        select=MEMBERS,
        insert=ADMINS,
        update=ADMINS,
        delete=ADMINS,
    ),
    "conversations": Expect(
        row=lambda r: ("id", r.tenant.conversation_id),
        select=MEMBERS,
        insert=NOBODY,  # the intake creates them
        update=MEMBERS,  # inbox columns only (test_provenance_columns)
        delete=ADMINS,
    ),
    "messages": Expect(
        row=lambda r: ("id", r.tenant.message_id),
        select=MEMBERS,
        insert=NOBODY,  # the intake's and the worker's rows
        update=NOBODY,
        delete=ADMINS,
    ),
    "tasks": Expect(
        row=lambda r: ("id", r.tenant.task_id),  # assigned to another agent, made by the system
        select=MEMBERS,
        insert=MEMBERS,
        update=ADMINS,
        delete=ADMINS,
    ),
    "workspace_agent_config": Expect(
        row=lambda r: ("workspace_id", r.tenant.workspace_id),
        select=MEMBERS,
        insert=ADMINS,
        update=ADMINS,
        delete=ADMINS,
    ),
    "agent_sessions": Expect(
        row=lambda r: ("id", r.tenant.session_id),
        select=MEMBERS,
        insert=MEMBERS,
        update=MEMBERS,
        delete=NOBODY,
    ),
    "agent_turns": Expect(
        row=lambda r: ("id", r.tenant.turn_id),
        select=MEMBERS,
        insert=MEMBERS,
        update=NOBODY,
        delete=NOBODY,
    ),
    "whatsapp_webhook_events": Expect(
        row=lambda r: ("id", r.tenant.event_id),
        select=NOBODY,  # a raw payload may hold other workspaces' customers
        insert=NOBODY,
        update=NOBODY,
        delete=NOBODY,
    ),
    "message_status_orphans": Expect(
        row=_extra("message_status_orphans"),
        select=NOBODY,
        insert=NOBODY,
        update=NOBODY,
        delete=NOBODY,
    ),
    "conversation_merges": Expect(
        row=_extra("conversation_merges"),
        select=MEMBERS,  # where a merged conversation went
        insert=NOBODY,
        update=NOBODY,
        delete=NOBODY,
    ),
    "conversation_turn_fences": Expect(
        row=lambda r: ("conversation_id", r.tenant.conversation_id),
        select=NOBODY,
        insert=NOBODY,
        update=NOBODY,
        delete=NOBODY,
    ),
    # The workspace's own playbook rows (the global ones are nobody's to write).
    **{
        table: Expect(
            row=_extra(table), select=MEMBERS, insert=ADMINS, update=ADMINS, delete=ADMINS
        )
        for table in (
            "agent_intents",
            "agent_templates",
            "agent_mode_transitions",
            "agent_playbook_settings",
        )
    },
}

# Every function of public and private the API roles may execute, and who may.
EXECUTABLE: dict[str, frozenset[str]] = {
    # Membership checks run inside policies, as the caller.
    "private.is_workspace_member(uuid)": frozenset({"authenticated"}),
    "private.is_workspace_admin(uuid)": frozenset({"authenticated"}),
    "private.is_workspace_owner(uuid)": frozenset({"authenticated"}),
    "private.workspace_of_team(uuid)": frozenset({"authenticated"}),
    # The round-robin RPC (it checks the caller is an admin of the workspace) and its body.
    "assign_next_agent(uuid)": frozenset({"authenticated"}),
    "private.assign_next_agent(uuid)": frozenset({"authenticated"}),
    # A member's reply, template and resume (each checks membership of the conversation's
    # workspace), and their SECURITY DEFINER bodies.
    "send_message(uuid,text)": frozenset({"authenticated"}),
    "private.send_message(uuid,text)": frozenset({"authenticated"}),
    "send_template(uuid,text,text,jsonb)": frozenset({"authenticated"}),
    "private.send_template(uuid,text,text,jsonb)": frozenset({"authenticated"}),
    "resume_bot(uuid)": frozenset({"authenticated"}),
    "private.resume_bot(uuid)": frozenset({"authenticated"}),
}

# Sequences the API roles may use: none (only the service role inserts where one is used).
USABLE_SEQUENCES: dict[str, frozenset[str]] = {}


@pytest.fixture(scope="module")
async def rows(conn: asyncpg.Connection) -> tuple[Rows, Tenant]:
    home, other = await create_tenant(conn), await create_tenant(conn)
    return Rows(home, await _matrix_rows(conn, home)), other


async def _matrix_rows(conn: asyncpg.Connection, tenant: Tenant) -> dict[str, Any]:
    """The workspace's rows in the tables create_tenant leaves empty."""
    ws, agent = tenant.workspace_id, f"matrix-{random_suffix()}"
    extra: dict[str, Any] = {
        "agent_intents": await conn.fetchval(
            "insert into public.agent_intents (agent_id, workspace_id, intent, keywords)"
            " values ($1, $2, 'saludo', '{hola}') returning id",
            agent,
            ws,
        ),
        "agent_templates": await conn.fetchval(
            "insert into public.agent_templates (agent_id, workspace_id, intent, content)"
            " values ($1, $2, 'saludo', 'Hola') returning id",
            agent,
            ws,
        ),
        "agent_mode_transitions": await conn.fetchval(
            "insert into public.agent_mode_transitions (agent_id, workspace_id, from_mode,"
            " to_mode) values ($1, $2, 'conversacion', 'resumen') returning id",
            agent,
            ws,
        ),
        "agent_playbook_settings": await conn.fetchval(
            "insert into public.agent_playbook_settings (agent_id, workspace_id)"
            " values ($1, $2) returning id",
            agent,
            ws,
        ),
    }
    extra["message_status_orphans"] = await conn.fetchval(
        "insert into public.message_status_orphans (wamid, channel_id, status)"
        " values ($1, $2, 'delivered') returning id",
        "wamid." + random_suffix(),
        tenant.channel_id,
    )
    extra["conversation_merges"] = await conn.fetchval(
        "insert into public.conversation_merges (workspace_id, kind, reason, survivor_id)"
        " values ($1, 'conversation', 'same_customer', $2) returning id",
        tenant.workspace_id,
        tenant.conversation_id,
    )
    await conn.execute(
        "insert into public.conversation_turn_fences (conversation_id, epoch, holder)"
        " values ($1, 1, 'matrix')",
        tenant.conversation_id,
    )
    return extra


def _claims(actor: str, home: Tenant, other: Tenant) -> tuple[str, dict[str, Any]]:
    users = {
        "outsider": home.outsider,
        "other_agent": other.agent,
        "other_owner": other.owner,
        "agent": home.agent,
        "admin": home.admin,
        "owner": home.owner,
    }
    if actor == "anon":
        return "anon", {}
    return "authenticated", claims_for(users[actor])


async def _update_column(conn: asyncpg.Connection, table: str) -> str:
    """A column `authenticated` may update, else any column a statement may set."""
    column: str = await conn.fetchval(
        "select a.attname from pg_attribute a"
        " where a.attrelid = $1::regclass and a.attnum > 0 and not a.attisdropped"
        " and a.attidentity = '' and a.attgenerated = ''"
        " order by has_column_privilege('authenticated', a.attrelid, a.attnum, 'UPDATE') desc,"
        " a.attnum desc limit 1",
        f"public.{table}",
    )
    return column


async def _insert_values(
    conn: asyncpg.Connection, table: str, key: str, value: Any
) -> dict[str, Any]:
    """The row's non-null values of the columns without a default (nor identity/generated)."""
    record: str | None = await conn.fetchval(
        f"select to_jsonb(t) from public.{table} t where {key} = $1", value
    )
    assert record is not None, f"{table}: the matrix row {key}={value} is missing"
    values: dict[str, Any] = json.loads(record)
    columns = await conn.fetch(
        "select a.attname from pg_attribute a"
        " where a.attrelid = $1::regclass and a.attnum > 0 and not a.attisdropped"
        " and not a.atthasdef and a.attidentity = '' and a.attgenerated = ''",
        f"public.{table}",
    )
    return {c["attname"]: values[c["attname"]] for c in columns if values[c["attname"]] is not None}


async def _run(
    conn: asyncpg.Connection, op: Op, table: str, key: str, value: Any, insert: dict[str, Any]
) -> int:
    name = f"public.{table}"
    if op == "select":
        count: int = await conn.fetchval(f"select count(*) from {name} where {key} = $1", value)
        return count
    if op == "insert":
        columns = ", ".join(insert)
        status = await conn.execute(
            f"insert into {name} ({columns}) select {columns}"
            f" from jsonb_populate_record(null::{name}, $1::jsonb)",
            json.dumps(insert),
        )
    elif op == "update":
        column = await _update_column(conn, table)
        status = await conn.execute(
            f"update {name} set {column} = {column} where {key} = $1", value
        )
    else:
        status = await conn.execute(f"delete from {name} where {key} = $1", value)
    return int(status.rsplit(" ", 1)[-1])


async def _reaches(
    conn: asyncpg.Connection,
    role: str,
    claims: dict[str, Any],
    op: Op,
    table: str,
    row: tuple[str, Any],
    insert: dict[str, Any],
) -> bool:
    """True when the operation got past privileges, policies and guard triggers."""
    key, value = row
    try:
        async with acting_as(conn, role, claims):
            return await _run(conn, op, table, key, value, insert) > 0
    except asyncpg.InsufficientPrivilegeError:
        return False
    except asyncpg.PostgresError:
        if op == "insert":
            return True  # a key or check refused the copy: every access rule let it through
        raise


async def test_every_table_has_stated_expectations(conn: asyncpg.Connection) -> None:
    tables = {
        r["relname"]
        for r in await conn.fetch(
            "select c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace"
            " where n.nspname = 'public' and c.relkind in ('r', 'p')"
        )
    }
    assert sorted(tables - EXPECTED.keys()) == [], "state who may do what with these tables"
    assert sorted(EXPECTED.keys() - tables) == [], "these tables no longer exist"


async def test_access_matrix(conn: asyncpg.Connection, rows: tuple[Rows, Tenant]) -> None:
    home, other = rows
    tables = [
        r["relname"]
        for r in await conn.fetch(
            "select c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace"
            " where n.nspname = 'public' and c.relkind in ('r', 'p') order by 1"
        )
    ]
    wrong: list[str] = []
    for table in tables:
        expect = EXPECTED.get(table)
        if expect is None:
            wrong.append(f"{table}: no expectations stated")
            continue
        row = expect.row(home)
        insert = await _insert_values(conn, table, *row)
        for actor in ACTORS:
            role, claims = _claims(actor, home.tenant, other)
            for op in OPS:
                got = await _reaches(conn, role, claims, op, table, row, insert)
                if got != (actor in expect.allowed(op)):
                    wrong.append(f"{table}: {actor} {op} was {'allowed' if got else 'denied'}")
    assert wrong == []


async def test_only_listed_functions_are_executable_by_the_api_roles(
    conn: asyncpg.Connection,
) -> None:
    found = await conn.fetch(
        "select p.oid::regprocedure::text as name,"
        " has_function_privilege('anon', p.oid, 'execute') as anon,"
        " has_function_privilege('authenticated', p.oid, 'execute') as authenticated"
        " from pg_proc p join pg_namespace n on n.oid = p.pronamespace"
        " where n.nspname in ('public', 'private')"
    )
    executable = {
        r["name"]: frozenset(role for role in ("anon", "authenticated") if r[role])
        for r in found
        if r["anon"] or r["authenticated"]
    }
    assert executable == EXECUTABLE


async def test_only_listed_sequences_are_usable_by_the_api_roles(
    conn: asyncpg.Connection,
) -> None:
    found = await conn.fetch(
        "select c.oid::regclass::text as name, r.rolname"
        " from pg_class c join pg_namespace n on n.oid = c.relnamespace"
        " cross join (values ('anon'), ('authenticated')) r(rolname)"
        " where c.relkind = 'S' and n.nspname in ('public', 'private')"
        " and has_sequence_privilege(r.rolname, c.oid, 'usage, select, update')"
    )
    usable: dict[str, set[str]] = {}
    for r in found:
        usable.setdefault(r["name"], set()).add(r["rolname"])
    assert usable == {k: set(v) for k, v in USABLE_SEQUENCES.items()}
