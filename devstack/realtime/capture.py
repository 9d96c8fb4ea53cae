"""Capturing row changes for Postgres Changes without logical replication.

Supabase Realtime reads the `supabase_realtime` publication's changes from a logical replication
slot (wal2json). That needs `wal_level = logical`, a server restart away on a cluster that other
processes share, so the stand-in captures changes with triggers instead, all in a schema of its
own, `devstack_realtime`, installed at start-up (never in the bridge's schemas or migrations):

- `devstack_realtime.capture()`, an AFTER row trigger put on every table of the publication for
  the operations the publication publishes. It first asks `devstack_realtime.listeners` whether
  any stand-in has a subscriber for this table and operation; if none, it returns at once (one
  index probe per row). Otherwise it stores the row (`to_jsonb(new)`, `to_jsonb(old)`) in the
  unlogged `devstack_realtime.changes` and NOTIFYs `devstack_realtime:changes` with
  `<id> <table oid> <operation>`. NOTIFY, like replication, is delivered only after commit, in
  commit order, and never for a rolled-back transaction. Rows travel through the table, not the
  notification: NOTIFY payloads stop at 8000 bytes, and any database role may LISTEN.
- `devstack_realtime.listeners`: one row per (stand-in process, table, operation) with
  subscribers, keyed by the backend pid of the process's LISTEN connection, so rows of a
  stand-in that died are recognised and dropped.
- `devstack_realtime.visible_to()`: the RLS check, run by the dispatcher (see `pg_changes.py`).

The trigger function is SECURITY DEFINER: members' own updates (PostgREST as `authenticated`)
fire it too, and they must not be able to read or forge captured rows. Captured rows are
deleted a minute after they were written.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import asyncpg

log = logging.getLogger("devstack.realtime")

SCHEMA = "devstack_realtime"
CHANNEL = "devstack_realtime:changes"
TRIGGER = "devstack_realtime_capture"
PUBLICATION = "supabase_realtime"
RETENTION_SECONDS = 60

_INSTALL_SQL = f"""
select pg_advisory_xact_lock(hashtext('{SCHEMA} install'));
create schema if not exists {SCHEMA};
revoke all on schema {SCHEMA} from public;
comment on schema {SCHEMA} is
  'The local Realtime stand-in''s change capture (devstack/realtime/capture.py); not the bridge''s.';

create table if not exists {SCHEMA}.listeners (
  entity oid not null,
  action text not null check (action in ('*', 'INSERT', 'UPDATE', 'DELETE')),
  pid integer not null,
  primary key (entity, action, pid)
);

create unlogged table if not exists {SCHEMA}.changes (
  id bigint generated always as identity primary key,
  entity oid not null,
  type text not null,
  record jsonb,
  old_record jsonb,
  commit_timestamp timestamptz not null default now(),
  created_at timestamptz not null default clock_timestamp()
);

create or replace function {SCHEMA}.capture() returns trigger
language plpgsql security definer set search_path = ''
as $$
declare
  change_id bigint;
begin
  if not exists (select 1 from {SCHEMA}.listeners l
                  where l.entity = tg_relid and l.action in ('*', tg_op)) then
    return null;
  end if;
  insert into {SCHEMA}.changes (entity, type, record, old_record)
  values (tg_relid, tg_op,
          case when tg_op <> 'DELETE' then pg_catalog.to_jsonb(new) end,
          case when tg_op <> 'INSERT' then pg_catalog.to_jsonb(old) end)
  returning id into change_id;
  perform pg_catalog.pg_notify('{CHANNEL}', change_id || ' ' || tg_relid || ' ' || tg_op);
  return null;
end
$$;

-- For each (role, claims): may that role, with those claims, select the row `probe` finds?
-- As Realtime's apply_rls: role and request.jwt.claims set locally, then back to the caller.
create or replace function {SCHEMA}.visible_to(
  probe text, key_values text[], roles text[], claims text[]
) returns boolean[]
language plpgsql
as $$
declare
  answers boolean[] := '{{}}';
  answer boolean;
begin
  for i in 1 .. coalesce(pg_catalog.array_length(roles, 1), 0) loop
    begin
      perform pg_catalog.set_config('role', roles[i], true),
              pg_catalog.set_config('request.jwt.claims', claims[i], true);
      execute probe into answer using key_values;
      perform pg_catalog.set_config('role', 'none', true);
    exception when others then
      -- a policy that fails (or a role that is gone) shows the row to nobody
      answer := false;
    end;
    answers := answers || coalesce(answer, false);
  end loop;
  perform pg_catalog.set_config('role', 'none', true);
  return answers;
end
$$;
revoke all on function {SCHEMA}.capture() from public;
revoke all on function {SCHEMA}.visible_to(text, text[], text[], text[]) from public;
"""

# Published tables without the capture trigger, with the operations to capture.
_MISSING_TRIGGERS_SQL = """
select format('%I.%I', pt.schemaname, pt.tablename) as name,
       p.pubinsert, p.pubupdate, p.pubdelete
from pg_catalog.pg_publication p
join pg_catalog.pg_publication_tables pt on pt.pubname = p.pubname
where p.pubname = $1
  and not exists (
    select 1 from pg_catalog.pg_trigger t
     where t.tgrelid = format('%I.%I', pt.schemaname, pt.tablename)::regclass
       and t.tgname = $2)
"""

_FORGET_DEAD_SQL = f"""
delete from {SCHEMA}.listeners l
 where not exists (select 1 from pg_catalog.pg_stat_activity a where a.pid = l.pid)
"""
_PRUNE_SQL = f"""
delete from {SCHEMA}.changes
 where created_at < clock_timestamp() - make_interval(secs => $1)
"""


async def install(conn: asyncpg.Connection, *, lock_timeout: str = "5s") -> None:
    """Create (or update) the schema and functions, then trigger every published table that
    lacks the trigger. A table that stays locked past `lock_timeout` is skipped with a warning
    rather than blocking start-up behind someone else's transaction."""
    async with conn.transaction():
        await conn.execute(_INSTALL_SQL)
    tables = await conn.fetch(_MISSING_TRIGGERS_SQL, PUBLICATION, TRIGGER)
    for table in tables:
        events = [
            name
            for name, published in (
                ("insert", table["pubinsert"]),
                ("update", table["pubupdate"]),
                ("delete", table["pubdelete"]),
            )
            if published
        ]
        if events:
            await _add_trigger(conn, table["name"], events, lock_timeout)
    await conn.execute(_FORGET_DEAD_SQL)


async def _add_trigger(
    conn: asyncpg.Connection, table: str, events: Iterable[str], lock_timeout: str
) -> None:
    try:
        async with conn.transaction():
            await conn.execute(f"select pg_advisory_xact_lock(hashtext('{SCHEMA} install'))")
            await conn.execute(f"set local lock_timeout = '{lock_timeout}'")
            exists = await conn.fetchval(
                "select 1 from pg_catalog.pg_trigger where tgrelid = $1::regclass and tgname = $2",
                table,
                TRIGGER,
            )
            if exists:
                return
            await conn.execute(
                f"create trigger {TRIGGER} after {' or '.join(events)} on {table}"
                f" for each row execute function {SCHEMA}.capture()"
            )
    except asyncpg.PostgresError as exc:
        log.warning("realtime: cannot capture changes of %s: %s", table, exc)


async def set_listening(
    conn: asyncpg.Connection | asyncpg.pool.PoolConnectionProxy,
    pid: int,
    keys: Iterable[tuple[int, str]],
    *,
    listening: bool,
) -> None:
    """Tell the triggers that this process has (or no longer has) subscribers for these
    (table oid, action) pairs."""
    pairs = list(keys)
    if not pairs:
        return
    entities = [entity for entity, _ in pairs]
    actions = [action for _, action in pairs]
    if listening:
        await conn.execute(
            f"insert into {SCHEMA}.listeners (entity, action, pid)"
            " select e, a, $3 from unnest($1::oid[], $2::text[]) as k(e, a)"
            " on conflict do nothing",
            entities,
            actions,
            pid,
        )
    else:
        await conn.execute(
            f"delete from {SCHEMA}.listeners l using unnest($1::oid[], $2::text[]) as k(e, a)"
            " where l.entity = k.e and l.action = k.a and l.pid = $3",
            entities,
            actions,
            pid,
        )


async def forget_pid(conn: asyncpg.Connection | asyncpg.pool.PoolConnectionProxy, pid: int) -> None:
    await conn.execute(f"delete from {SCHEMA}.listeners where pid = $1", pid)


async def prune(conn: asyncpg.Connection) -> None:
    await conn.execute(_PRUNE_SQL, float(RETENTION_SECONDS))
