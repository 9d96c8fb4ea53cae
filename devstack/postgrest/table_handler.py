"""`/rest/v1/<table>`: reads (GET, HEAD) and updates (PATCH), as PostgREST answers them.

The order of checks is PostgREST's: the JWT, the schema profile, the query string, the media
type, then in one transaction the table and its relationships from the catalog, the request's
settings (role, `request.jwt.claims`, …, as for RPC), and the statement. Inserts, upserts and
deletes are not served: they answer PGRST127 rather than pretend.
"""

from __future__ import annotations

import json
import logging
from urllib.parse import urlencode

import asyncpg
from starlette.requests import Request
from starlette.responses import Response

from devstack.postgrest import (
    errors,
    negotiation,
    payload,
    query_params,
    request_settings,
    table_plan,
    table_sql,
    tables,
)
from devstack.postgrest.bearer import Identity, identify
from devstack.postgrest.call import request_connection
from devstack.postgrest.catalog import Connection
from devstack.postgrest.errors import JSON_MEDIA_TYPE, PostgrestError
from devstack.postgrest.resolution import closest
from devstack.state import DevstackState

logger = logging.getLogger(__name__)

_OBJECT_MEDIA_TYPE = "application/vnd.pgrst.object+json; charset=utf-8"
MAX_BODY_BYTES = 10 * 1024 * 1024


async def serve(request: Request, state: DevstackState) -> Response:
    try:
        return await _serve(request, state)
    except PostgrestError as error:
        return error.response()
    except Exception:
        logger.exception("PostgREST stand-in failed on %s %s", request.method, request.url.path)
        return PostgrestError(500, "PGRSTX00", "Internal error of the local stand-in").response()


async def _serve(request: Request, state: DevstackState) -> Response:
    config = state.config
    body = await payload.read_body(request, MAX_BODY_BYTES)
    identity = identify(
        request.headers.get("authorization"), secret=config.jwt_secret, anon_role=config.anon_role
    )
    schema, by_profile = negotiation.schema(request, config.schemas)
    method = request.method
    if method not in ("GET", "HEAD", "PATCH"):
        raise errors.not_implemented(
            f"The local stand-in reads (GET, HEAD) and updates (PATCH) tables; {method} is not"
            " served"
        )
    query = list(request.query_params.multi_items())
    params = query_params.parse(query)
    accept = request.headers.get("accept")
    if "nulls=stripped" in (accept or "").replace(" ", ""):
        raise errors.not_implemented("The local stand-in does not strip nulls (nulls=stripped)")
    if request.headers.get("range") is not None:
        raise errors.not_implemented(
            "The local stand-in pages with limit and offset only, not the Range header"
        )
    single = negotiation.wants_single_object(accept)
    prefer = _preferences(request.headers.get("prefer"))
    if method == "PATCH":
        _refuse_paging(params)
    context = request_settings.RequestContext(
        schema=schema,
        role=identity.role,
        claims=identity.claims,
        method=method,
        path=request.url.path.removeprefix("/rest/v1"),
        headers={k.lower(): v for k, v in request.headers.items() if k.lower() != "cookie"},
        cookies=dict(request.cookies),
    )
    name = request.path_params["table"]
    row = await _in_transaction(
        state, identity, context, name, params, body, single, prefer, readonly=method != "PATCH"
    )
    return _response(request, name, query, params, row, single, prefer, by_profile, schema)


async def _in_transaction(
    state: DevstackState,
    identity: Identity,
    context: request_settings.RequestContext,
    name: str,
    params: query_params.QueryParams,
    body: bytes,
    single: bool,
    prefer: dict[str, str],
    *,
    readonly: bool,
) -> asyncpg.Record:
    async with request_connection(state, identity) as conn, conn.transaction(readonly=readonly):
        statement = await _statement(
            conn, context.schema, name, params, body, single, prefer, is_update=not readonly
        )
        applied = await request_settings.apply(conn, context, state.config.extra_search_path, "")
        if not applied.may_switch:
            raise request_settings.forbidden_role(context.role)
        row = await conn.fetchrow(statement.sql, *statement.args)
        assert row is not None
        if single and int(row["page_total"]) != 1:
            raise errors.singularity(int(row["page_total"]))
    return row


async def _statement(
    conn: Connection,
    schema: str,
    name: str,
    params: query_params.QueryParams,
    body: bytes,
    single: bool,
    prefer: dict[str, str],
    *,
    is_update: bool,
) -> table_sql.Statement:
    table = await tables.find_table(conn, schema, name)
    if table is None:
        best = closest(name, await tables.table_names(conn, schema), minimum=0.75)
        raise PostgrestError(
            404,
            "PGRST205",
            f"Could not find the table '{schema}.{name}' in the schema cache",
            hint=None if best is None else f"Perhaps you meant the table '{schema}.{best}'",
        )
    node = await table_plan.resolve(conn, table, params)
    if is_update:
        columns, raw = _update_columns(table, body)
        if columns and not node.filters and not node.logic:
            # Supabase loads pg-safeupdate for PostgREST's role: no UPDATE without a WHERE.
            raise PostgrestError(400, "21000", "UPDATE requires a WHERE clause")
        return table_sql.update(
            node,
            columns,
            raw,
            single=single,
            representation=prefer.get("return") == "representation",
        )
    return table_sql.read(node, single=single, count=prefer.get("count") == "exact")


def _update_columns(table: tables.Table, body: bytes) -> tuple[list[tables.Column], str]:
    try:
        value = json.loads(body.decode("utf-8") if body else "{}")
    except (UnicodeDecodeError, ValueError):
        raise errors.invalid_body("Empty or invalid json") from None
    if isinstance(value, list):
        raise errors.not_implemented("The local stand-in updates with a JSON object body only")
    if not isinstance(value, dict):
        raise errors.invalid_body("Empty or invalid json")
    columns = []
    for key in value:
        column = table.column(key)
        if column is None:
            raise PostgrestError(
                400,
                "PGRST204",
                f"Could not find the '{key}' column of '{table.name}' in the schema cache",
            )
        columns.append(column)
    return columns, json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _refuse_paging(params: query_params.QueryParams) -> None:
    top = params.at(())
    if top.limit is not None or top.offset is not None or top.order is not None:
        raise errors.not_implemented("The local stand-in does not order, limit or offset an update")


def _preferences(header: str | None) -> dict[str, str]:
    found: dict[str, str] = {}
    for token in (header or "").split(","):
        key, _, value = token.strip().partition("=")
        if key in ("return", "count") and value:
            found[key] = value
    if found.get("count") in ("planned", "estimated"):
        raise errors.not_implemented("The local stand-in counts exactly only (Prefer: count=exact)")
    return found


def _response(
    request: Request,
    name: str,
    query: list[tuple[str, str]],
    params: query_params.QueryParams,
    row: asyncpg.Record,
    single: bool,
    prefer: dict[str, str],
    by_profile: bool,
    schema: str,
) -> Response:
    page_total = int(row["page_total"])
    headers: dict[str, str] = {}
    applied = []
    if prefer.get("return") == "representation" and request.method == "PATCH":
        applied.append("return=representation")
    if prefer.get("count") == "exact":
        applied.append("count=exact")
    if applied:
        headers["Preference-Applied"] = ", ".join(applied)
    media_type = _OBJECT_MEDIA_TYPE if single else JSON_MEDIA_TYPE
    if by_profile:
        headers["Content-Profile"] = schema
    if request.method == "PATCH":
        headers["Content-Range"] = _content_range(0, page_total - 1, None)
        if prefer.get("return") == "representation":
            return _with_gucs(row, 200, str(row["body"]).encode(), headers, media_type)
        return _with_gucs(row, 204, b"", headers, None)
    lower = params.at(()).offset or 0
    upper = lower + page_total - 1
    total = None if row["total"] is None else int(row["total"])
    status = 200
    content = b"" if request.method == "HEAD" else str(row["body"]).encode()
    if total is not None:
        if lower > total:
            status = 416
            content = errors.encode_json(
                PostgrestError(
                    416,
                    "PGRST103",
                    "Requested range not satisfiable",
                    details=f"An offset of {lower} was requested, but there are only {total} rows.",
                ).body()
            )
        elif 1 + upper - lower < total:
            status = 206
    headers["Content-Range"] = _content_range(lower, upper, total)
    canonical = urlencode(sorted(query))
    headers["Content-Location"] = f"/{name}" + (f"?{canonical}" if canonical else "")
    return _with_gucs(row, status, content, headers, media_type)


def _content_range(lower: int, upper: int, total: int | None) -> str:
    in_range = total != 0 and lower <= upper
    span = f"{lower}-{upper}" if in_range else "*"
    return f"{span}/{'*' if total is None else total}"


def _with_gucs(
    row: asyncpg.Record,
    status: int,
    content: bytes,
    headers: dict[str, str],
    media_type: str | None,
) -> Response:
    if row["response_status"] is not None:
        try:
            status = int(row["response_status"])
        except ValueError:
            raise PostgrestError(
                500, "PGRST112", "response.status guc must be a valid status code"
            ) from None
    if row["response_headers"] is not None:
        try:
            extra = json.loads(row["response_headers"])
            for item in extra:
                ((key, value),) = item.items()
                headers[str(key)] = str(value)
        except (ValueError, AttributeError, TypeError):
            raise PostgrestError(
                500,
                "PGRST111",
                "response.headers guc must be a JSON array composed of objects with a single "
                "key and a string value",
            ) from None
    headers.setdefault("Vary", "Accept, Prefer, Range")
    return Response(content=content, status_code=status, headers=headers, media_type=media_type)
