"""`/rest/v1/rpc/{function}`: from the HTTP request to the call and back.

The order of checks is PostgREST's: the JWT, then the schema profile, the method and the body,
then the function lookup and the call (`call`). Every failure is answered with PostgREST's error
JSON; nothing a client sends produces a stack trace.
"""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import Response

from devstack.postgrest import call, errors, negotiation, payload, request_settings, response
from devstack.postgrest.bearer import identify
from devstack.postgrest.errors import PostgrestError
from devstack.postgrest.schema_cache import SchemaCache
from devstack.state import DevstackState

logger = logging.getLogger(__name__)

# Supabase's gateway refuses large bodies before PostgREST sees them; WhatsApp webhook batches
# (up to 3 MB, and larger once escaped into an RPC argument) must still fit.
MAX_BODY_BYTES = 10 * 1024 * 1024


async def rpc(request: Request, state: DevstackState, cache: SchemaCache) -> Response:
    try:
        return await _rpc(request, state, cache)
    except PostgrestError as error:
        return error.response()
    except Exception:
        # A defect of the stand-in, not bad input: keep PostgREST's error shape, log the trace.
        logger.exception("PostgREST stand-in failed on %s %s", request.method, request.url.path)
        return PostgrestError(500, "PGRSTX00", "Internal error of the local stand-in").response()


async def _rpc(request: Request, state: DevstackState, cache: SchemaCache) -> Response:
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
    outcome = await call.call(
        state, cache, context, identity, name, args, single_object, is_post=is_post
    )
    return response.success(
        outcome,
        by_profile=by_profile,
        head=method == "HEAD",
        counted=negotiation.wants_count(request.headers.get("prefer")),
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
