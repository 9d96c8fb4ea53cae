"""`/rest/v1/rpc/{function}`: one request, one pooled connection, one transaction.

The order of checks is PostgREST's: the JWT, then the schema profile, the method and the body,
then the function lookup, then the call. Every failure is answered with PostgREST's error JSON;
nothing a client sends produces a stack trace.
"""

from __future__ import annotations

import logging
from typing import Literal

import asyncpg
from starlette.requests import Request
from starlette.responses import Response

from devstack.postgrest import (
    catalog,
    errors,
    negotiation,
    payload,
    query,
    request_settings,
    resolution,
    response,
)
from devstack.postgrest.bearer import Identity, identify
from devstack.postgrest.catalog import Connection, Routine
from devstack.postgrest.errors import PostgrestError
from devstack.postgrest.payload import Payload
from devstack.state import DevstackState

logger = logging.getLogger(__name__)

# PostgREST's db-pool-acquisition-timeout default.
POOL_ACQUISITION_TIMEOUT = 10.0
# Supabase's gateway refuses large bodies before PostgREST sees them; WhatsApp webhook batches
# (up to 3 MB, and larger once escaped into an RPC argument) must still fit.
MAX_BODY_BYTES = 10 * 1024 * 1024

_Isolation = Literal["read_committed", "repeatable_read", "serializable"]
_ISOLATION: dict[str, _Isolation] = {
    "read committed": "read_committed",
    "repeatable read": "repeatable_read",
    "serializable": "serializable",
}


async def rpc(request: Request, state: DevstackState) -> Response:
    try:
        return await _rpc(request, state)
    except PostgrestError as error:
        return error.response()
    except Exception:
        # A defect of the stand-in, not bad input: keep PostgREST's error shape, log the trace.
        logger.exception("PostgREST stand-in failed on %s %s", request.method, request.url.path)
        return PostgrestError(500, "PGRSTX00", "Internal error of the local stand-in").response()


async def _rpc(request: Request, state: DevstackState) -> Response:
    config = state.config
    body = await payload.read_body(request, MAX_BODY_BYTES)
    identity = identify(
        request.headers.get("authorization"), secret=config.jwt_secret, anon_role=config.anon_role
    )
    method = request.method
    schema, by_profile = negotiation.schema(request, config.schemas)
    if method not in ("GET", "HEAD", "POST"):
        raise errors.invalid_rpc_method(method)
    is_post = method == "POST"
    negotiation.refuse_result_shaping(list(request.query_params.multi_items()), is_post=is_post)
    if is_post:
        args = payload.from_body(body, request.headers.get("content-type"))
    else:
        args = payload.from_query(list(request.query_params.multi_items()))
    single_object = negotiation.wants_single_object(request.headers.get("accept"))

    context = request_settings.RequestContext(
        schema=schema,
        role=identity.role,
        claims=identity.claims,
        method=method,
        path=_postgrest_path(request),
        headers=_headers(request),
        cookies=dict(request.cookies),
    )
    name = request.path_params["function"]
    outcome = await _call(state, context, identity, name, args, single_object, is_post=is_post)
    return response.success(
        outcome,
        by_profile=by_profile,
        head=method == "HEAD",
        counted=negotiation.wants_count(request.headers.get("prefer")),
    )


async def _call(
    state: DevstackState,
    context: request_settings.RequestContext,
    identity: Identity,
    name: str,
    args: Payload,
    single_object: bool,
    *,
    is_post: bool,
) -> response.CallResult:
    try:
        conn = await state.pool.acquire(timeout=POOL_ACQUISITION_TIMEOUT)
    except TimeoutError:
        raise errors.pool_timeout() from None
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise errors.connection_error(str(exc) or type(exc).__name__) from None
    try:
        routine = await _resolve(conn, context.schema, name, args, is_post=is_post)
        settings = await request_settings.role_settings(conn, context.role)
        statement = query.call_statement(routine, args, single_object=single_object)
        pre = request_settings.settings_statement(context, state.config.extra_search_path, settings)
        # STABLE/IMMUTABLE functions, and every GET, run read-only, as behind PostgREST.
        readonly = not is_post or routine.volatility != "volatile"
        isolation = _ISOLATION.get(routine.isolation or "", "read_committed")
        async with conn.transaction(isolation=isolation, readonly=readonly):
            await conn.execute(pre.sql, *pre.args)
            # prepare() bypasses asyncpg's statement cache: functions are dropped and recreated
            # while the server runs, and a cached plan would outlive them.
            prepared = await conn.prepare(statement.sql)
            row = await prepared.fetchrow(*statement.args)
            assert row is not None
            outcome = response.CallResult.from_row(routine, row)
            if single_object and outcome.page_total != 1:
                raise errors.singularity(outcome.page_total)
        return outcome
    except asyncpg.PostgresError as exc:
        raise errors.from_database(exc, authed=identity.authed) from None
    except (OSError, asyncpg.InterfaceError) as exc:
        raise errors.client_error(str(exc) or type(exc).__name__) from None
    finally:
        await state.pool.release(conn)


async def _resolve(
    conn: Connection, schema: str, name: str, args: Payload, *, is_post: bool
) -> Routine:
    overloads = await catalog.routines_named(conn, schema, name)
    routine = resolution.find_routine(overloads, args.keys, args.media_type, is_post=is_post)
    if routine is not None:
        return routine
    raise resolution.not_found(
        schema,
        name,
        args.keys,
        args.media_type,
        is_post=is_post,
        overloads=overloads,
        schema_functions=await catalog.routine_names(conn, schema),
    )


def _postgrest_path(request: Request) -> str:
    # The gateway strips /rest/v1 before PostgREST sees the path; `request.path` is the raw path.
    raw: bytes = request.scope.get("raw_path") or request.url.path.encode()
    path = raw.decode("latin-1").split("?", 1)[0]
    return path.removeprefix("/rest/v1")


def _headers(request: Request) -> dict[str, str]:
    # PostgREST exposes every header but the cookie, under its lower-cased name.
    return {
        name.decode("latin-1").lower(): value.decode("latin-1")
        for name, value in request.headers.raw
        if name.lower() != b"cookie"
    }
