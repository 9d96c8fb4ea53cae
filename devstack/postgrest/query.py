"""The SQL of an RPC call, shaped like the statement PostgREST v14 generates.

JSON arguments are decoded by Postgres itself with `json_to_record` (`json_to_recordset` for a bulk
call) typed by the parameters, and the function is called in named notation inside a LATERAL join,
so values coerce, and fail, exactly as they do behind PostgREST (`"5"` is a valid integer, `5.5`
is 22P02). The response body is built by `json_agg` in the same statement, so timestamps, numerics
and nested JSON serialise as PostgREST serialises them.
"""

from __future__ import annotations

from dataclasses import dataclass

from devstack.postgrest.catalog import Param, Routine
from devstack.postgrest.payload import Payload


@dataclass(frozen=True)
class Statement:
    sql: str
    args: tuple[object, ...]


def ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def call_statement(routine: Routine, payload: Payload, *, single_object: bool) -> Statement:
    """Columns: page_total (rows), body (JSON text), response_headers, response_status."""
    source, args = _call_source(routine, payload)
    sql = (
        f"WITH pgrst_source AS ({source}) "
        f"SELECT {_page_total(routine)} AS page_total, "
        f"{_body(routine, single_object=single_object)} AS body, "
        "nullif(pg_catalog.current_setting('response.headers', true), '') AS response_headers, "
        "nullif(pg_catalog.current_setting('response.status', true), '') AS response_status "
        "FROM (SELECT pgrst_source.* FROM pgrst_source) _postgrest_t"
    )
    return Statement(sql, tuple(args))


def _call_source(routine: Routine, payload: Payload) -> tuple[str, list[object]]:
    function = f"{ident(routine.schema)}.{ident(routine.name)}"
    selected = "pgrst_call.pgrst_scalar" if routine.returns_scalar else "pgrst_call.*"

    def call(arguments: str) -> str:
        if routine.returns_scalar:
            return f"(SELECT {function}({arguments}) pgrst_scalar) pgrst_call"
        return f"{function}({arguments}) pgrst_call"

    params = routine.params
    if len(params) == 1 and params[0].name == "":
        # The single unnamed parameter receives the whole body.
        param = params[0]
        if param.type == "bytea":
            return f"SELECT {selected} FROM {call('$1::bytea')}", [payload.raw]
        text = payload.raw.decode("utf-8", errors="replace")
        return f"SELECT {selected} FROM {call(f'$1::text::{param.cast_type}')}", [text]

    chosen = [p for p in params if p.name in payload.keys]
    if not chosen:
        return f"SELECT {selected} FROM {call('')}", []
    if payload.text_args is not None:
        arguments = ", ".join(
            f"{_named(p)} := ${i}::text::{p.cast_type}" for i, p in enumerate(chosen, start=1)
        )
        return f"SELECT {selected} FROM {call(arguments)}", [
            payload.text_args[p.name] for p in chosen
        ]

    columns = ", ".join(ident(p.name) for p in chosen)
    typed = ", ".join(f"{ident(p.name)} {p.cast_type}" for p in chosen)
    decode = "json_to_record" if payload.is_object else "json_to_recordset"
    arguments = ", ".join(f"{_named(p)} := pgrst_body.{ident(p.name)}" for p in chosen)
    source = (
        f"SELECT {selected} "
        "FROM (SELECT $1::json AS json_data) pgrst_payload, "
        f"LATERAL (SELECT {columns} FROM pg_catalog.{decode}(pgrst_payload.json_data) "
        f"AS _({typed})) pgrst_body, "
        f"LATERAL {call(arguments)}"
    )
    return source, [payload.raw.decode("utf-8")]


def _named(param: Param) -> str:
    return ("VARIADIC " if param.variadic else "") + ident(param.name)


def _page_total(routine: Routine) -> str:
    return "1" if routine.returns_single else "pg_catalog.count(_postgrest_t)"


def _body(routine: Routine, *, single_object: bool) -> str:
    row = "_postgrest_t.pgrst_scalar" if routine.returns_scalar else "_postgrest_t"
    if single_object or routine.returns_single:
        return f"coalesce(pg_catalog.json_agg({row})->0, 'null')"
    return f"coalesce(pg_catalog.json_agg({row}), '[]')"
