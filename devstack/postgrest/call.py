"""One call in the database: one pooled connection, one transaction.

The function comes from the schema cache; the transaction's first statement makes the request's
settings and reads the function's catalog version, and a call whose function changed since it was
read starts over with a fresh read (`schema_cache` says why). A transaction is four round trips:
BEGIN, the settings, the call, COMMIT.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Literal

import asyncpg

from devstack.postgrest import catalog, errors, query, request_settings, resolution, response
from devstack.postgrest.bearer import Identity
from devstack.postgrest.catalog import Connection, Overloads, Routine
from devstack.postgrest.errors import PostgrestError
from devstack.postgrest.payload import Payload
from devstack.postgrest.schema_cache import SchemaCache
from devstack.state import DevstackState

# PostgREST's db-pool-acquisition-timeout default.
POOL_ACQUISITION_TIMEOUT = 10.0

_Isolation = Literal["read_committed", "repeatable_read", "serializable"]
_ISOLATION: dict[str, _Isolation] = {
    "read committed": "read_committed",
    "repeatable read": "repeatable_read",
    "serializable": "serializable",
}
# Tries of a call whose function changes between the schema cache's read and the call.
_ATTEMPTS = 3


class _StaleSchema(Exception):
    """The function's catalog version moved since it was read: read it again, start over."""


async def call(
    state: DevstackState,
    cache: SchemaCache,
    context: request_settings.RequestContext,
    identity: Identity,
    name: str,
    args: Payload,
    single_object: bool,
    *,
    is_post: bool,
) -> response.CallResult:
    async with request_connection(state, identity) as conn:
        return await _attempts(conn, state, cache, context, name, args, single_object, is_post)


@asynccontextmanager
async def request_connection(state: DevstackState, identity: Identity) -> AsyncIterator[Connection]:
    """A pooled connection for one request, its failures answered as PostgREST answers them: no
    connection in time (503), none at all, the database's errors, a connection lost mid-way."""
    try:
        conn = await state.pool.acquire(timeout=POOL_ACQUISITION_TIMEOUT)
    except TimeoutError:
        raise errors.pool_timeout() from None
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise errors.connection_error(str(exc) or type(exc).__name__) from None
    try:
        yield conn
    except asyncpg.PostgresError as exc:
        raise errors.from_database(exc, authed=identity.authed) from None
    except (OSError, asyncpg.InterfaceError) as exc:
        raise errors.client_error(str(exc) or type(exc).__name__) from None
    finally:
        await state.pool.release(conn)


async def _attempts(
    conn: Connection,
    state: DevstackState,
    cache: SchemaCache,
    context: request_settings.RequestContext,
    name: str,
    args: Payload,
    single_object: bool,
    is_post: bool,
) -> response.CallResult:
    """The call, started over when the function turns out to have changed since it was read."""
    fresh = False
    for attempt in range(1, _ATTEMPTS + 1):
        overloads, routine = await _resolve(
            conn, cache, context.schema, name, args, is_post=is_post, fresh=fresh
        )
        # The last attempt runs with what it read, as PostgREST does with a schema cache that is
        # a moment old, instead of starting over for as long as DDL keeps coming.
        last = attempt == _ATTEMPTS
        try:
            return await _run(
                conn,
                state,
                context,
                routine,
                None if last else overloads.version,
                args,
                single_object,
                is_post=is_post,
            )
        except _StaleSchema:
            fresh = True
        except asyncpg.PostgresError as exc:
            # The version covers the function's own catalog rows, not the names of the types the
            # SQL casts to: a renamed type shows as an undefined object. A fresh read tells a
            # stale entry (start over, nothing was done) from a function that really fails.
            if fresh or last or not _may_be_stale(exc):
                raise
            if (await cache.read(conn, context.schema, name)) == overloads:
                raise
            fresh = True
    raise AssertionError("the last attempt raises or returns")


def _may_be_stale(exc: asyncpg.PostgresError) -> bool:
    sqlstate = exc.sqlstate or ""
    return sqlstate.startswith("42") and sqlstate != "42501"


async def _run(
    conn: Connection,
    state: DevstackState,
    context: request_settings.RequestContext,
    routine: Routine,
    expected_version: str | None,
    args: Payload,
    single_object: bool,
    *,
    is_post: bool,
) -> response.CallResult:
    """One transaction: the settings (with the checks they read), the call, the commit."""
    statement = query.call_statement(routine, args, single_object=single_object)
    # STABLE/IMMUTABLE functions, and every GET, run read-only, as behind PostgREST.
    readonly = not is_post or routine.volatility != "volatile"
    isolation = _ISOLATION.get(routine.isolation or "", "read_committed")
    async with conn.transaction(isolation=isolation, readonly=readonly):
        applied = await request_settings.apply(
            conn, context, state.config.extra_search_path, routine.name
        )
        if expected_version is not None and applied.routines_version != expected_version:
            raise _StaleSchema
        if not applied.may_switch:
            raise request_settings.forbidden_role(context.role)
        # The call stays prepared per connection (asyncpg's statement cache), as PostgREST keeps
        # its statements prepared: a function changed in a way the SQL depends on gets new SQL,
        # and Postgres re-plans a kept statement when a function or table it uses changes. Like
        # behind PostgREST, a generic plan of an inlined SQL function does not notice ALTER TYPE
        # on a composite type its body uses.
        row = await conn.fetchrow(statement.sql, *statement.args)
        assert row is not None
        outcome = response.CallResult.from_row(routine, row)
        if single_object and outcome.page_total != 1:
            raise errors.singularity(outcome.page_total)
    return outcome


async def _resolve(
    conn: Connection,
    cache: SchemaCache,
    schema: str,
    name: str,
    args: Payload,
    *,
    is_post: bool,
    fresh: bool,
) -> tuple[Overloads, Routine]:
    cached = None if fresh else cache.get(schema, name)
    if cached is not None:
        try:
            routine = resolution.find_routine(
                cached.routines, args.keys, args.media_type, is_post=is_post
            )
        except PostgrestError:
            routine = None  # ambiguous as cached: the catalog may have changed since
        if routine is not None:
            return cached, routine
    # Not cached, or no match among what was cached: a function created a moment ago must be
    # found, and a 404 or 300 is only ever answered from a fresh read.
    overloads = await cache.read(conn, schema, name)
    routine = resolution.find_routine(
        overloads.routines, args.keys, args.media_type, is_post=is_post
    )
    if routine is not None:
        return overloads, routine
    raise resolution.not_found(
        schema,
        name,
        args.keys,
        args.media_type,
        is_post=is_post,
        overloads=overloads.routines,
        schema_functions=await catalog.routine_names(conn, schema),
    )
