"""PostgREST's error responses: the JSON body, the headers and the SQLSTATE → HTTP status mapping.

Mirrors PostgREST v14 (`PostgREST.Error`): every error body carries `code`, `details`, `hint` and
`message` (null when absent), every error response carries `Proxy-Status: PostgREST; error=<code>`
(which postgrest-py falls back on when a body is not JSON), and 401s carry `WWW-Authenticate`.
"""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Any

import asyncpg
from starlette.responses import Response

JSON_MEDIA_TYPE = "application/json; charset=utf-8"


class PostgrestError(Exception):
    """An error PostgREST would answer with; `response()` renders it."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: Any = None,  # text, or for PGRST201 a JSON array
        hint: str | None = None,
        headers: dict[str, str] | None = None,
        *,
        from_postgrest: bool = True,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.hint = hint
        self.headers = dict(headers or {})
        # False for the gateway's own errors, which carry no PostgREST `Proxy-Status`.
        self.from_postgrest = from_postgrest

    def body(self) -> dict[str, Any]:
        # Aeson writes object keys in sorted order; kept for byte-level resemblance.
        return {
            "code": self.code,
            "details": self.details,
            "hint": self.hint,
            "message": self.message,
        }

    def response(self) -> Response:
        headers = dict(self.headers)
        if self.from_postgrest:
            headers["Proxy-Status"] = f"PostgREST; error={self.code}"
        if self.status == 401 and not any(k.lower() == "www-authenticate" for k in headers):
            headers["WWW-Authenticate"] = "Bearer"
        return Response(
            content=encode_json(self.body()),
            status_code=self.status,
            headers=headers,
            media_type=JSON_MEDIA_TYPE,
        )


def encode_json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def http_status(sqlstate: str, message: str, *, authed: bool) -> int:
    """PostgREST's `mapSQLtoHTTP`: the status of a database error.

    `authed` is true when the request's role is not the anonymous role; it turns an insufficient
    privilege (42501) into 403 instead of 401 (an anonymous caller should authenticate first).
    """
    exact = {"23503": 409, "23505": 409, "25006": 405, "53400": 500, "57P01": 503, "P0001": 400}
    if sqlstate in exact:
        return exact[sqlstate]
    if sqlstate == "21000":
        # pg-safeupdate's "DELETE requires a WHERE clause" is a client error; other cardinality
        # violations (a scalar subquery returning two rows) are server-side bugs.
        return 400 if message.endswith("requires a WHERE clause") else 500
    if sqlstate == "22023":
        return 401 if message.startswith("role") and message.endswith("does not exist") else 400
    if sqlstate == "42883":
        return 406 if message.startswith("function xmlagg(") else 404
    if sqlstate == "42P01":
        return 404
    if sqlstate == "42P17":
        return 500
    if sqlstate == "42501":
        return 403 if authed else 401
    if sqlstate.startswith("PT"):
        return _custom_status(sqlstate[2:])
    by_class = {
        "08": 503, "09": 500, "0L": 403, "0P": 403, "25": 500, "28": 403, "2D": 500, "38": 500,
        "39": 500, "3B": 500, "40": 500, "53": 503, "54": 500, "55": 500, "57": 500, "58": 500,
        "F0": 500, "HV": 500, "P0": 500, "XX": 500,
    }  # fmt: skip
    return by_class.get(sqlstate[:2], 400)


def _custom_status(digits: str) -> int:
    # `RAISE SQLSTATE 'PT402'` picks the status; anything that is not a status code is a 500.
    if digits.isdigit() and 100 <= int(digits) <= 999:
        return int(digits)
    return 500


def from_database(exc: asyncpg.PostgresError, *, authed: bool) -> PostgrestError:
    """The response PostgREST gives for an error raised by Postgres during the call."""
    sqlstate = exc.sqlstate or ""
    message = exc.message or ""
    if sqlstate == "PGRST":
        return _from_pgrst_raise(message, exc.detail)
    return PostgrestError(
        status=http_status(sqlstate, message, authed=authed),
        code=sqlstate,
        message=message,
        details=exc.detail,
        hint=exc.hint,
    )


def _from_pgrst_raise(message: str, detail: str | None) -> PostgrestError:
    """`RAISE SQLSTATE 'PGRST' USING message = '<json>', detail = '<json>'`: full control over the
    error's body (message) and status/headers (detail)."""
    body = _json_object(message)
    if body is None or not isinstance(body.get("code"), str) or "message" not in body:
        return _pgrst_parse_error(
            f"Invalid JSON value for MESSAGE: '{message}'",
            "MESSAGE must be a JSON object with obligatory keys: 'code', 'message' and optional "
            "keys: 'details', 'hint'.",
        )
    if detail is None:
        return _pgrst_parse_error("DETAIL is missing in the RAISE statement", _DETAIL_HINT)
    control = _json_object(detail)
    status = control.get("status") if control is not None else None
    raw_headers = control.get("headers") if control is not None else None
    if (
        not isinstance(status, int)
        or isinstance(status, bool)
        or not isinstance(raw_headers, dict)
        or not all(isinstance(v, str) for v in raw_headers.values())
    ):
        return _pgrst_parse_error(f"Invalid JSON value for DETAIL: '{detail}'", _DETAIL_HINT)
    return PostgrestError(
        status=status,
        code=body["code"],
        message=_text_or_none(body["message"]) or "",
        details=_text_or_none(body.get("details")),
        hint=_text_or_none(body.get("hint")),
        headers={str(k): str(v) for k, v in raw_headers.items()},
    )


_DETAIL_HINT = (
    "DETAIL must be a JSON object with obligatory keys: 'status', 'headers' and optional key: "
    "'status_text'."
)


def _pgrst_parse_error(details: str, hint: str) -> PostgrestError:
    return PostgrestError(
        500,
        "PGRST121",
        "Could not parse JSON in the \"RAISE SQLSTATE 'PGRST'\" error",
        details=details,
        hint=hint,
    )


def _json_object(text: str) -> dict[str, Any] | None:
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _text_or_none(value: Any) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else json.dumps(value)


# -- errors PostgREST raises itself ---------------------------------------------------------------


def invalid_body(message: str) -> PostgrestError:
    return PostgrestError(400, "PGRST102", message)


def unacceptable_schema(schema: str, exposed: tuple[str, ...]) -> PostgrestError:
    return PostgrestError(
        406,
        "PGRST106",
        f"Invalid schema: {schema}",
        hint="Only the following schemas are exposed: " + ", ".join(exposed),
    )


def invalid_rpc_method(method: str) -> PostgrestError:
    return PostgrestError(405, "PGRST101", f"Cannot use the {method} method on RPC")


def unavailable_media_types(media_types: list[str]) -> PostgrestError:
    return PostgrestError(
        406, "PGRST107", "None of these media types are available: " + ", ".join(media_types)
    )


def singularity(rows: int) -> PostgrestError:
    return PostgrestError(
        406,
        "PGRST116",
        "Cannot coerce the result to a single JSON object",
        details=f"The result contains {rows} rows",
    )


def pool_timeout() -> PostgrestError:
    return PostgrestError(504, "PGRST003", "Timed out acquiring connection from connection pool.")


def connection_error(details: str | None) -> PostgrestError:
    return PostgrestError(503, "PGRST000", "Database connection error.", details=details)


def client_error(details: str | None) -> PostgrestError:
    return PostgrestError(
        503, "PGRST001", "Database client error. Retrying the connection.", details=details
    )


def not_implemented(details: str) -> PostgrestError:
    return PostgrestError(400, "PGRST127", "Feature not implemented", details=details)


def body_too_large(limit: int) -> PostgrestError:
    # Not PostgREST's own error: Supabase's gateway limits request sizes before PostgREST sees
    # them. Shaped like postgrest-py's fallback for non-PostgREST errors (code = the status).
    return PostgrestError(
        413,
        "413",
        HTTPStatus.REQUEST_ENTITY_TOO_LARGE.phrase,
        details=f"The request body is larger than the {limit} bytes the local stand-in accepts",
        from_postgrest=False,
    )
