"""Postgres Changes subscriptions: what a channel's bindings subscribe to, checked as Realtime
checks them, and kept by table for the dispatcher.

Realtime inserts each binding into `realtime.subscription`, one row per published table the
binding's schema/table patterns match (`like`, `*` meaning any); a trigger on that table refuses
filters on columns the subscriber's role may not select, values that do not cast to the column's
type, `in` lists over 100 values and the like. Any failure cancels every binding of the channel
and the client gets a `system` error; otherwise a `system` "Subscribed to PostgreSQL". The join
reply is `ok` either way. Here the same checks run against the catalog, and the subscriptions
stay in this process; `devstack_realtime.listeners` only tells the capture triggers which tables
have subscribers at all (see `capture.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections import Counter
from collections.abc import Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from devstack.realtime import capture
from devstack.realtime.hub import Subscription
from devstack.realtime.pg_params import Filter, Params, ParamsError, parse

log = logging.getLogger("devstack.realtime")

SUBSCRIBED = "Subscribed to PostgreSQL"

_ENTITIES_SQL = """
select format('%I.%I', pt.schemaname, pt.tablename)::regclass::oid as entity
from pg_catalog.pg_publication_tables pt
where pt.pubname = $1
  and pt.schemaname like (case $2 when '*' then '%' else $2 end) escape ''
  and pt.tablename like (case $3 when '*' then '%' else $3 end) escape ''
"""
# Columns the role may select, with the type filter values are cast to.
_COLUMNS_SQL = """
select a.attname, a.atttypid::regtype::text as type
from pg_catalog.pg_attribute a
where a.attrelid = $1 and a.attnum > 0 and not a.attisdropped
  and pg_catalog.has_column_privilege($2, a.attrelid, a.attnum, 'SELECT')
"""
_IS_KEYWORDS = ("null", "true", "false", "unknown")


@dataclass(eq=False, slots=True)
class PgSubscription:
    """One binding of one channel, on one table."""

    channel: Subscription
    binding_id: int
    entity: int
    action: str
    filters: tuple[Filter, ...]
    select: tuple[str, ...] | None

    @property
    def key(self) -> tuple[int, str]:
        return (self.entity, self.action)


class SubscribeError(Exception):
    """The channel's bindings cannot be subscribed; the message goes in the `system` push."""


def system_payload(channel: Subscription, status: str, message: str) -> dict[str, Any]:
    return {
        "extension": "postgres_changes",
        "status": status,
        "message": message,
        "channel": channel.sub_topic,
    }


def _pg_error(exc: asyncpg.PostgresError) -> str:
    """A Postgres error as Postgrex prints it: `ERROR 22P02 (invalid_text_representation) …`."""
    name = re.sub(r"(?<!^)(?=[A-Z])", "_", type(exc).__name__).lower().removesuffix("_error")
    return f"ERROR {exc.sqlstate} ({name}) {exc.args[0] if exc.args else exc}"


class _Raise(Exception):
    """A check failed the way `realtime.subscription_check_filters` raises (P0001)."""


async def _check_filters(
    conn: asyncpg.pool.PoolConnectionProxy,
    columns: Mapping[str, str],
    filters: Sequence[Filter],
    select: Sequence[str] | None,
) -> None:
    for f in filters:
        sql_type = columns.get(f.column)
        if sql_type is None:
            raise _Raise(f"invalid column for filter {f.column}")
        await _check_filter(conn, f, sql_type)
    for column in select or ():
        if column not in columns:
            raise _Raise(f"invalid column for select {column}")


_PATTERN_OPERATORS = {"like": "~~", "ilike": "~~", "match": "~", "imatch": "~*"}


async def _check_filter(conn: asyncpg.pool.PoolConnectionProxy, f: Filter, sql_type: str) -> None:
    if f.op == "in":
        count = await conn.fetchval(
            f"select coalesce(array_length(($1::text)::{sql_type}[], 1), 0)", f.value
        )
        if count > 100:
            raise _Raise("too many values for `in` filter. Maximum 100")
    elif f.op == "is":
        if f.value not in _IS_KEYWORDS:
            raise _Raise("invalid value for is filter: must be null, true, false, or unknown")
        if f.value != "null" and sql_type != "boolean":
            raise _Raise(f"is {f.value} filter requires a boolean column, got {sql_type}")
    elif f.op in _PATTERN_OPERATORS:
        known = await conn.fetchval(
            "select exists (select 1 from pg_catalog.pg_operator"
            " where oprname = $1 and oprleft = $2::regtype)",
            _PATTERN_OPERATORS[f.op],
            sql_type,
        )
        if not known:
            raise _Raise(f"operator {f.op} requires a text-compatible column type, got {sql_type}")
        if f.op in ("match", "imatch"):
            try:
                await conn.fetchval("select '' ~ $1", f.value)
            except asyncpg.PostgresError as exc:
                raise _Raise(f"invalid regular expression for {f.op} filter: {exc}") from exc
    else:
        await conn.fetchval(f"select ($1::text)::{sql_type}", f.value)


@dataclass
class Registry:
    """This process's subscriptions, by table and by channel.

    Which (table, action) pairs have subscribers is also written to
    `devstack_realtime.listeners`, in the order the changes happen here (one write at a time,
    each after the previous one), so the triggers never miss a table a channel listens to.
    """

    pool: asyncpg.Pool | None = None
    # The backend pid of the LISTEN connection: what `devstack_realtime.listeners` rows carry.
    pid: int | None = None
    by_entity: dict[int, dict[PgSubscription, None]] = field(default_factory=dict)
    by_channel: dict[Subscription, list[PgSubscription]] = field(default_factory=dict)
    # What each channel asked for, (params, binding id): subscribed again on a token refresh
    bindings: dict[Subscription, list[tuple[Any, int]]] = field(default_factory=dict)
    _keys: Counter[tuple[int, str]] = field(default_factory=Counter)
    _tail: asyncio.Task[None] | None = None

    def candidates(self, entity: int, action: str) -> list[PgSubscription]:
        members = self.by_entity.get(entity)
        if not members:
            return []
        return [s for s in members if s.action == "*" or s.action == action]

    # -- subscribing ------------------------------------------------------------------------

    async def subscribe(
        self, channel: Subscription, bindings: Sequence[tuple[Any, int]]
    ) -> dict[str, Any]:
        """Subscribe the channel's bindings (params, id), replacing what it had; returns the
        `system` payload to push."""
        self.bindings[channel] = list(bindings)
        try:
            subscriptions = await self._resolve(channel, bindings)
        except SubscribeError as exc:
            await self._replace(channel, [])
            return system_payload(channel, "error", str(exc))
        if channel not in self.bindings:
            return system_payload(channel, "ok", SUBSCRIBED)  # left meanwhile
        await self._replace(channel, subscriptions)
        return system_payload(channel, "ok", SUBSCRIBED)

    async def resubscribe(self, channel: Subscription) -> dict[str, Any] | None:
        """A token refresh: the bindings again with the new claims (None: it has none)."""
        bindings = self.bindings.get(channel)
        if not bindings:
            return None
        return await self.subscribe(channel, bindings)

    def forget(self, channel: Subscription) -> None:
        """The channel is gone; the triggers are told in the background."""
        self.bindings.pop(channel, None)
        self._replace(channel, [])

    async def _resolve(
        self, channel: Subscription, bindings: Sequence[tuple[Any, int]]
    ) -> list[PgSubscription]:
        parsed: list[tuple[Params, int]] = []
        for params, binding_id in bindings:
            try:
                parsed.append((parse(params), binding_id))
            except ParamsError as exc:
                raise SubscribeError(str(exc)) from None
        if self.pool is None:
            raise SubscribeError("Realtime was unable to connect to the project database")
        role = str(channel.claims.get("role", ""))
        subscriptions: list[PgSubscription] = []
        async with self.pool.acquire() as conn:
            for params, binding_id in parsed:
                entities = await self._entities(conn, params, role)
                subscriptions += [
                    PgSubscription(
                        channel, binding_id, entity, params.action, params.filters, params.select
                    )
                    for entity in entities
                ]
        return subscriptions

    async def _entities(
        self, conn: asyncpg.pool.PoolConnectionProxy, params: Params, role: str
    ) -> list[int]:
        entities: list[int] = [
            r["entity"]
            for r in await conn.fetch(
                _ENTITIES_SQL, capture.PUBLICATION, params.schema, params.table
            )
        ]
        if not entities:
            raise SubscribeError(
                "Unable to subscribe to changes with given parameters. Please check Realtime is "
                f"enabled for the given connect parameters: [{params.describe()}]"
            )
        try:
            if await conn.fetchval("select to_regrole($1) is null", role):
                raise _Raise(
                    'null value in column "claims_role" of relation "subscription" '
                    "violates not-null constraint"
                )
            for entity in entities:
                rows = await conn.fetch(_COLUMNS_SQL, entity, role)
                columns = {r["attname"]: r["type"] for r in rows}
                await _check_filters(conn, columns, params.filters, params.select)
        except (_Raise, asyncpg.PostgresError) as exc:
            detail = (
                _pg_error(exc)
                if isinstance(exc, asyncpg.PostgresError)
                else f"ERROR P0001 (raise_exception) {exc}"
            )
            raise SubscribeError(
                "Unable to subscribe to changes with given parameters. An exception happened so "
                f"please check your connect parameters: [{params.describe()}]. "
                f"Exception: {detail}"
            ) from None
        return entities

    # -- bookkeeping ------------------------------------------------------------------------

    def _replace(
        self, channel: Subscription, subscriptions: list[PgSubscription]
    ) -> asyncio.Task[None]:
        old = self.by_channel.pop(channel, [])
        for sub in old:
            members = self.by_entity.get(sub.entity)
            if members is not None:
                members.pop(sub, None)
                if not members:
                    del self.by_entity[sub.entity]
        if subscriptions:
            self.by_channel[channel] = subscriptions
            for sub in subscriptions:
                self.by_entity.setdefault(sub.entity, {})[sub] = None
        before = set(self._keys)
        self._keys.update(s.key for s in subscriptions)
        self._keys.subtract(s.key for s in old)
        self._keys = +self._keys
        added = [k for k in self._keys if k not in before]
        removed = [k for k in before if k not in self._keys]
        return self._then(self._write(added, removed))

    def _then(self, step: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run `step` after every write asked for before it."""
        previous = self._tail

        async def run() -> None:
            if previous is not None:
                with contextlib.suppress(Exception):
                    await previous
            try:
                await step
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                # The LISTEN connection's next `attach` writes everything again.
                log.warning("realtime: cannot update the capture listeners: %s", exc)

        self._tail = asyncio.get_running_loop().create_task(run())
        return self._tail

    async def _write(
        self, added: Iterable[tuple[int, str]], removed: Iterable[tuple[int, str]]
    ) -> None:
        added, removed = list(added), list(removed)
        if self.pool is None or self.pid is None or not (added or removed):
            return  # `attach` writes everything once the LISTEN connection is up
        async with self.pool.acquire() as conn:
            await capture.set_listening(conn, self.pid, added, listening=True)
            await capture.set_listening(conn, self.pid, removed, listening=False)

    async def attach(self, conn: asyncpg.Connection, pid: int) -> None:
        """A (new) LISTEN connection: re-announce every table with subscribers under its pid."""

        async def step() -> None:
            old, self.pid = self.pid, pid
            if old is not None and old != pid:
                await capture.forget_pid(conn, old)
            await capture.set_listening(conn, pid, list(self._keys), listening=True)

        await self._then(step())

    async def detach(self) -> None:
        async def step() -> None:
            if self.pool is not None and self.pid is not None:
                async with self.pool.acquire() as conn:
                    await capture.forget_pid(conn, self.pid)
            self.pid = None

        await self._then(step())
