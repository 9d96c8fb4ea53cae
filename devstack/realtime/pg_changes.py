"""Postgres Changes delivery: captured rows (see `capture.py`) to the channels allowed to see them.

One task per process LISTENs on `devstack_realtime:changes` over a dedicated connection. A
notification names the change's id, table and operation; unless a channel of this process has a
binding for that table and operation, it is dropped without a query. Otherwise, one change at a
time in commit order, as Realtime's `realtime.apply_rls` does for each WAL record:

1. the table's columns, primary key, replica identity and, for each subscriber role, which
   columns that role may select;
2. the bindings' filters, evaluated by Postgres with the column's type (`'<value>'::type op
   '<filter>'::type`), against the new row, and for a DELETE against the old one;
3. RLS, for INSERT and UPDATE on tables with row level security: for each distinct (role,
   claims), `select exists (... where <primary key> = ...)` with that role and
   `request.jwt.claims` set, against the table as it is now. DELETEs skip the check (Realtime
   cannot secure them), so they go to every binding whose filter matches, and their old record
   is cut down to the primary key when the table has RLS;
4. one payload per (role, column selection), sent to each channel with the ids of its bindings
   that matched, as the event `postgres_changes`:
   `{"data": {"columns", "commit_timestamp", "errors", "old_record"?, "record"?, "schema",
   "table", "type"}, "ids": [...]}`.

The old record is the replica identity's columns: the whole old row under REPLICA IDENTITY
FULL, the primary key under DEFAULT (what wal2json reports as `identity`). Records are the
database's own jsonb text (`to_jsonb` of the row), so values have the types and formats
Realtime's `realtime.cast` gives them. `commit_timestamp` is the writing transaction's start
(`now()`): a trigger cannot know the commit time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg

from devstack.realtime import capture
from devstack.realtime.frames import Vsn, dumps
from devstack.realtime.hub import Subscription
from devstack.realtime.listening import Listener
from devstack.realtime.pg_params import Filter
from devstack.realtime.pg_subscriptions import PgSubscription, Registry

log = logging.getLogger("devstack.realtime")

APPLICATION_NAME = "devstack realtime changes"
MAX_RECORD_BYTES = 1024 * 1024  # Realtime's poll_max_record_bytes default
_PRUNE_EVERY = 10.0

_FETCH_SQL = f"""
select c.id, c.entity, c.type, c.commit_timestamp,
       octet_length(coalesce(c.record::text, '')) + octet_length(coalesce(c.old_record::text, ''))
         as size,
       c.record::text as record, c.old_record::text as old_record,
       array(select array[e.key, e.value::text, e.value #>> '{{}}']
               from jsonb_each(c.record) with ordinality as e(key, value, n) order by e.n)
         as record_items,
       array(select array[e.key, e.value::text, e.value #>> '{{}}']
               from jsonb_each(c.old_record) with ordinality as e(key, value, n) order by e.n)
         as old_items
from {capture.SCHEMA}.changes c
where c.id = any($1::bigint[])
"""
_TABLE_SQL = """
select a.attname as name, pg_catalog.quote_ident(a.attname) as quoted, t.typname,
       a.atttypid::regtype::text as sql_type,
       coalesce(a.attnum = any(pk.conkey), false) as is_pk,
       coalesce(a.attnum = any(ri.indkey::int2[]), false) as is_ident,
       array(select pg_catalog.has_column_privilege(r.role, c.oid, a.attnum, 'SELECT')
               from unnest($2::text[]) with ordinality as r(role, n) order by r.n) as selectable,
       c.relrowsecurity, c.relreplident::text as relreplident, n.nspname, c.relname,
       format('%I.%I', n.nspname, c.relname) as qualified
from pg_catalog.pg_class c
join pg_catalog.pg_namespace n on n.oid = c.relnamespace
join pg_catalog.pg_attribute a on a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped
join pg_catalog.pg_type t on t.oid = a.atttypid
left join pg_catalog.pg_constraint pk on pk.conrelid = c.oid and pk.contype = 'p'
left join pg_catalog.pg_index ri on ri.indrelid = c.oid and ri.indisreplident
where c.oid = $1
order by a.attnum
"""
_VISIBLE_SQL = f"select {capture.SCHEMA}.visible_to($1, $2, $3, $4)"

_COMPARISONS = {
    "eq": "=",
    "neq": "!=",
    "lt": "<",
    "lte": "<=",
    "gt": ">",
    "gte": ">=",
    "like": "like",
    "ilike": "ilike",
    "match": "~",
    "imatch": "~*",
}


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    quoted: str
    type: str  # pg_type.typname, what `columns` reports
    sql_type: str  # what filter values and keys are cast to
    is_pk: bool
    is_ident: bool
    selectable: tuple[bool, ...]  # per role, in the order the roles were asked for


# One value of a captured row: (json text, plain text or None for null)
Value = tuple[str, str | None]


@dataclass(frozen=True, slots=True)
class Change:
    id: int
    entity: int
    type: str
    commit_timestamp: datetime
    size: int
    record_json: str | None
    old_json: str | None
    record: dict[str, Value]  # in jsonb key order
    old: dict[str, Value]


def _values(items: Sequence[Sequence[str | None]]) -> dict[str, Value]:
    return {str(k): (str(raw), text) for k, raw, text in items}


def _change(row: asyncpg.Record) -> Change:
    return Change(
        id=row["id"],
        entity=row["entity"],
        type=row["type"],
        commit_timestamp=row["commit_timestamp"],
        size=row["size"],
        record_json=row["record"],
        old_json=row["old_record"],
        record=_values(row["record_items"]),
        old=_values(row["old_items"]),
    )


def _filter_sql(f: Filter, column: Column, row: str, first_param: int) -> str:
    """`f` as SQL over `row` (`new_row` or `old_row`, jsonb); its column name and value are the
    parameters `first_param` and `first_param + 1`. Types and keywords come from the catalog and
    a fixed list, never from the client."""
    t = column.sql_type
    lhs = f"(({row} ->> ${first_param}::text)::{t})"
    value = f"${first_param + 1}::text"
    if f.op == "is":
        keyword = {"null": "null", "true": "true", "false": "false"}.get(f.value, "unknown")
        return f"({lhs} is {'not ' if f.negate else ''}{keyword})"
    if f.op == "isdistinct":
        return f"({lhs} is {'not ' if f.negate else ''}distinct from ({value})::{t})"
    if f.op == "in":
        expr = f"({lhs} = any(({value})::{t}[]))"
    else:
        expr = f"({lhs} {_COMPARISONS[f.op]} ({value})::{t})"
    return f"(not {expr})" if f.negate else expr


def _jsonb_object(items: Sequence[tuple[str, str]]) -> str:
    """An object as Postgres prints jsonb (`{"a": 1, "b": 2}`), from each value's json text."""
    if not items:
        return "{}"
    return "{" + ", ".join(f"{dumps(k)}: {raw}" for k, raw in items) + "}"


def _timestamp(value: datetime) -> str:
    utc = value.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


class PostgresChanges(Listener[int]):
    application_name = APPLICATION_NAME
    what = "postgres changes"
    ready_timeout = 10.0

    def __init__(self, database_url: str, registry: Registry) -> None:
        super().__init__(database_url)
        self.registry = registry

    async def stop(self) -> None:
        await super().stop()
        with contextlib.suppress(OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            await self.registry.detach()

    # -- the LISTEN connection --------------------------------------------------------------

    def _on_notify(self, _conn: object, _pid: int, _channel: str, payload: object) -> None:
        try:
            change_id, entity, action = str(payload).split(" ")
            if self.registry.candidates(int(entity), action):
                self._pending.append(int(change_id))
                self._wakeup.set()
        except ValueError:
            log.warning("realtime: ignoring a malformed %s notification", capture.CHANNEL)

    async def _serve(self, conn: asyncpg.Connection) -> None:
        lost = asyncio.Event()
        conn.add_termination_listener(lambda _c: lost.set())
        await capture.install(conn)
        await conn.add_listener(capture.CHANNEL, self._on_notify)
        await self.registry.attach(conn, conn.get_server_pid())
        self.listening.set()
        loop = asyncio.get_running_loop()
        next_prune = loop.time() + _PRUNE_EVERY
        while not lost.is_set():
            if loop.time() >= next_prune:
                await capture.prune(conn)
                next_prune = loop.time() + _PRUNE_EVERY
            if not self._pending:
                self._wakeup.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), 1.0)
                if conn.is_closed():
                    return
                continue
            ids = list(self._pending)
            rows = {r["id"]: r for r in await conn.fetch(_FETCH_SQL, ids)}
            for change_id in ids:
                self._pending.popleft()
                row = rows.get(change_id)
                if row is None:
                    continue
                try:
                    await self._dispatch(conn, _change(row))
                except asyncpg.PostgresError:
                    if conn.is_closed():
                        raise
                    log.exception("realtime: cannot deliver change %s", change_id)

    # -- one change -------------------------------------------------------------------------

    async def _dispatch(self, conn: asyncpg.Connection, change: Change) -> None:
        candidates = self.registry.candidates(change.entity, change.type)
        if not candidates:
            return
        roles = sorted({str(s.channel.claims.get("role", "")) for s in candidates})
        table = await conn.fetch(_TABLE_SQL, change.entity, roles)
        if not table:
            return
        meta = table[0]
        columns = [
            Column(
                r["name"],
                r["quoted"],
                r["typname"],
                r["sql_type"],
                r["is_pk"],
                r["is_ident"],
                tuple(r["selectable"]),
            )
            for r in table
        ]
        rls = bool(meta["relrowsecurity"]) and change.type != "DELETE"
        old = self._identity(change, columns, meta["relreplident"])
        visible = await self._through_filters(conn, change, columns, old, candidates)
        errors: dict[str, str] = {}
        if change.type != "DELETE":
            errors = self._key_errors(columns, roles)
        if rls:
            visible = await self._through_rls(
                conn, change, columns, meta["qualified"], visible, errors
            )
        self._deliver(change, meta, columns, roles, old, candidates, visible, errors)

    @staticmethod
    def _identity(change: Change, columns: Sequence[Column], replident: str) -> dict[str, Value]:
        """wal2json's `identity`: the old row's replica identity columns."""
        if change.type == "INSERT" or replident == "n":
            return {}
        if replident == "f":
            return change.old
        wanted = {c.name for c in columns if (c.is_ident if replident == "i" else c.is_pk)}
        return {k: v for k, v in change.old.items() if k in wanted}

    @staticmethod
    def _key_errors(columns: Sequence[Column], roles: Sequence[str]) -> dict[str, str]:
        keys = [c for c in columns if c.is_pk]
        errors = {}
        for i, role in enumerate(roles):
            if not keys:
                errors[role] = "Error 400: Bad Request, no primary key"
            elif not all(c.selectable[i] for c in keys):
                errors[role] = "Error 401: Unauthorized"
        return errors

    async def _through_filters(
        self,
        conn: asyncpg.Connection,
        change: Change,
        columns: Sequence[Column],
        old: Mapping[str, Value],
        candidates: Sequence[PgSubscription],
    ) -> set[PgSubscription]:
        by_name = {c.name: c for c in columns}
        sides: list[tuple[str, Mapping[str, Value]]] = [("new_row", change.record)]
        if change.type == "DELETE":
            sides.append(("old_row", old))
        exprs: list[str] = []
        params: list[Any] = [change.record_json, change.old_json]
        index: dict[tuple[Filter, str], int] = {}
        plans: list[tuple[PgSubscription, list[list[int]]]] = []
        for sub in candidates:
            options: list[list[int]] = []
            for side, values in sides:
                # a filter on a column the row does not carry never matches
                if not all(f.column in values and f.column in by_name for f in sub.filters):
                    continue
                checks = []
                for f in sub.filters:
                    if (f, side) not in index:
                        index[(f, side)] = len(exprs)
                        exprs.append(_filter_sql(f, by_name[f.column], side, len(params) + 1))
                        params += [f.column, f.value]
                    checks.append(index[(f, side)])
                options.append(checks)
            plans.append((sub, options))
        results: list[bool | None] = []
        if exprs:
            try:
                sql = (
                    f"select array[{', '.join(exprs)}]"
                    " from (select $1::jsonb, $2::jsonb) as change(new_row, old_row)"
                )
                results = list(await conn.fetchval(sql, *params))
            except asyncpg.PostgresError as exc:
                if conn.is_closed():
                    raise
                log.warning("realtime: cannot evaluate filters of change %s: %s", change.id, exc)
                return set()
        return {
            sub
            for sub, options in plans
            if any(all(results[i] for i in checks) for checks in options)
        }

    async def _through_rls(
        self,
        conn: asyncpg.Connection,
        change: Change,
        columns: Sequence[Column],
        qualified: str,
        visible: set[PgSubscription],
        errors: Mapping[str, str],
    ) -> set[PgSubscription]:
        keys = [c for c in columns if c.is_pk]
        groups: dict[tuple[str, str], list[PgSubscription]] = {}
        for sub in visible:
            role = str(sub.channel.claims.get("role", ""))
            if role not in errors:
                claims = json.dumps(dict(sub.channel.claims), separators=(",", ":"))
                groups.setdefault((role, claims), []).append(sub)
        if not groups:
            return set()
        where = " and ".join(
            f"{c.quoted} = ($1[{i}])::{c.sql_type}" for i, c in enumerate(keys, start=1)
        )
        probe = f"select exists (select 1 from {qualified} where {where})"
        values = [change.record.get(c.name, ("null", None))[1] for c in keys]
        pairs = list(groups)
        answers = await conn.fetchval(
            _VISIBLE_SQL, probe, values, [r for r, _ in pairs], [c for _, c in pairs]
        )
        return {sub for pair, ok in zip(pairs, answers, strict=True) if ok for sub in groups[pair]}

    # -- payloads ---------------------------------------------------------------------------

    def _deliver(
        self,
        change: Change,
        meta: asyncpg.Record,
        columns: Sequence[Column],
        roles: Sequence[str],
        old: Mapping[str, Value],
        candidates: Sequence[PgSubscription],
        visible: set[PgSubscription],
        errors: Mapping[str, str],
    ) -> None:
        groups: dict[tuple[str, tuple[str, ...] | None], list[PgSubscription]] = {}
        for sub in candidates:
            role = str(sub.channel.claims.get("role", ""))
            if sub in visible or role in errors:
                groups.setdefault((role, sub.select), []).append(sub)
        for (role, select), subs in groups.items():
            data = self._data(
                change, meta, columns, roles.index(role), select, old, errors.get(role)
            )
            self._send(data, subs)

    def _data(
        self,
        change: Change,
        meta: asyncpg.Record,
        columns: Sequence[Column],
        role_index: int,
        select: tuple[str, ...] | None,
        old: Mapping[str, Value],
        error: str | None,
    ) -> str:
        head = {"schema": meta["nspname"], "table": meta["relname"], "type": change.type}
        if error is not None:
            return dumps(
                {"columns": None, "commit_timestamp": None, "errors": [error], "record": None}
                | head
            )
        shown = {
            c.name
            for c in columns
            if c.selectable[role_index] and (select is None or c.name in select or c.is_pk)
        }
        keys = {c.name for c in columns if c.is_pk}
        too_big = change.size > MAX_RECORD_BYTES

        def pick(values: Mapping[str, Value], *, keys_only: bool = False) -> list[tuple[str, str]]:
            return [
                (k, raw)
                for k, (raw, _text) in values.items()
                if k in shown
                and (not keys_only or k in keys)
                and (not too_big or len(raw.encode()) <= 64)
            ]

        parts = [
            '"columns":'
            + json.dumps(
                [{"name": c.name, "type": c.type} for c in columns if c.name in shown],
                ensure_ascii=False,
            ),
            f'"commit_timestamp":"{_timestamp(change.commit_timestamp)}"',
            '"errors":' + ('["Error 413: Payload Too Large"]' if too_big else "null"),
        ]
        if change.type != "INSERT":
            # UPDATE: the identity as logged; DELETE: only the key when RLS guards the table
            items = pick(old, keys_only=change.type == "DELETE" and bool(meta["relrowsecurity"]))
            parts.append('"old_record":' + (_jsonb_object(items) if items else "null"))
        if change.type != "DELETE":
            parts.append('"record":' + _jsonb_object(pick(change.record)))
        parts += [f'"{k}":{dumps(v)}' for k, v in head.items()]
        return "{" + ",".join(parts) + "}"

    def _send(self, data: str, subs: Sequence[PgSubscription]) -> None:
        by_channel: dict[Subscription, set[PgSubscription]] = {}
        for sub in subs:
            by_channel.setdefault(sub.channel, set()).add(sub)
        encoded: dict[tuple[Vsn, str, tuple[int, ...]], str] = {}
        for channel, matched in by_channel.items():
            bindings = self.registry.by_channel.get(channel)
            if not bindings:
                continue  # left while this change was being checked
            # Realtime lists a channel's matching binding ids last binding first.
            ids = tuple(s.binding_id for s in reversed(bindings) if s in matched)
            if not ids:
                continue
            vsn = channel.connection.vsn
            key = (vsn, channel.topic, ids)
            frame = encoded.get(key)
            if frame is None:
                payload = '{"data":' + data + ',"ids":' + dumps(list(ids)) + "}"
                frame = _frame(vsn, channel.topic, payload)
                encoded[key] = frame
            channel.connection.send(frame)


def _frame(vsn: Vsn, topic: str, payload: str) -> str:
    """A server push with `ref` and `join_ref` null, as Phoenix's fastlane encodes broadcasts."""
    if vsn is Vsn.V1:
        return (
            f'{{"topic":{dumps(topic)},"event":"postgres_changes","payload":{payload},"ref":null}}'
        )
    return f'[null,null,{dumps(topic)},"postgres_changes",{payload}]'
