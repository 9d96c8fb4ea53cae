"""The success response of a call: status, body, Content-Range, and the overrides a function
may make through the `response.status` and `response.headers` settings."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import asyncpg
from starlette.responses import Response

from devstack.postgrest.catalog import Routine
from devstack.postgrest.errors import JSON_MEDIA_TYPE, PostgrestError


@dataclass(frozen=True)
class CallResult:
    routine: Routine
    page_total: int  # rows in the result (1 for a function returning one value or row)
    body: str  # the JSON text Postgres built
    response_headers: str | None
    response_status: str | None

    @classmethod
    def from_row(cls, routine: Routine, row: asyncpg.Record) -> CallResult:
        return cls(
            routine=routine,
            page_total=int(row["page_total"]),
            body=str(row["body"]),
            response_headers=row["response_headers"],
            response_status=row["response_status"],
        )


def success(result: CallResult, *, by_profile: bool, head: bool, counted: bool) -> Response:
    rows = result.page_total
    # Without filters or a limit on the call, the exact count is the number of rows returned.
    total = str(rows) if counted else "*"
    headers = {"Content-Range": f"0-{rows - 1}/{total}" if rows > 0 else f"*/{total}"}
    status = 200
    if result.routine.returns_void:
        status, content, media_type = 204, b"", None
    else:
        content = b"" if head else result.body.encode()
        media_type = JSON_MEDIA_TYPE
        if by_profile:
            headers["Content-Profile"] = result.routine.schema
    status, headers = _apply_response_gucs(result, status, headers)
    headers.setdefault("Vary", "Accept, Prefer, Range")
    return Response(content=content, status_code=status, headers=headers, media_type=media_type)


def _apply_response_gucs(
    result: CallResult, status: int, headers: dict[str, str]
) -> tuple[int, dict[str, str]]:
    """`response.status` / `response.headers` set by the function override the response."""
    if result.response_status is not None:
        try:
            status = int(result.response_status)
        except ValueError:
            raise PostgrestError(
                500, "PGRST112", "response.status guc must be a valid status code"
            ) from None
    if result.response_headers is not None:
        for name, value in _guc_headers(result.response_headers):
            headers[name] = value
    return status, headers


def _guc_headers(text: str) -> list[tuple[str, str]]:
    error = PostgrestError(
        500,
        "PGRST111",
        "response.headers guc must be a JSON array composed of objects with a single key and a "
        "string value",
    )
    try:
        items: Any = json.loads(text)
    except ValueError:
        raise error from None
    if not isinstance(items, list):
        raise error
    pairs = []
    for item in items:
        if not isinstance(item, dict) or len(item) != 1:
            raise error
        ((name, value),) = item.items()
        if not isinstance(value, str):
            raise error
        pairs.append((str(name), value))
    return pairs
