"""Supabase Auth's error responses, in both of its shapes.

Auth (`internal/api/errors.go`) answers an `HTTPError` as
`{"code": <status>, "error_code": "<code>", "msg": "<message>"}` with header `x-sb-error-code`,
unless the request names API version 2024-01-01 or later in `X-Supabase-Api-Version` (supabase-js
does): then the body is `{"code": "<code>", "message": "<message>"}` and the header is echoed.
OAuth-style errors (the refresh grant's missing token) are `{"error", "error_description"}`.
"""

from __future__ import annotations

import json
import re
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

API_VERSION_HEADER = "X-Supabase-Api-Version"
_API_VERSION_2024 = "2024-01-01"
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class AuthError(Exception):
    """An `HTTPError` of Supabase Auth: the status, its `error_code` and message."""

    def __init__(self, status: int, error_code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error_code = error_code
        self.message = message

    def response(self, request: Request) -> Response:
        headers = {"x-sb-error-code": self.error_code}
        body: dict[str, Any]
        if api_version_2024(request):
            headers[API_VERSION_HEADER] = _API_VERSION_2024
            body = {"code": self.error_code, "message": self.message}
        else:
            body = {"code": self.status, "error_code": self.error_code, "msg": self.message}
        return json_response(body, self.status, headers)


class OAuthError(Exception):
    """An OAuth2 error of the token endpoint: always 400, `{"error", "error_description"}`."""

    def __init__(self, error: str, description: str) -> None:
        super().__init__(description)
        self.error = error
        self.description = description

    def response(self, request: Request) -> Response:
        body = {"error": self.error, "error_description": self.description}
        return json_response(body, 400, {})


def api_version_2024(request: Request) -> bool:
    """The request asks for the 2024-01-01 API (a date on or after it); a malformed value is the
    initial version, as Auth treats it."""
    value = request.headers.get(API_VERSION_HEADER, "").strip()
    return bool(_DATE.match(value)) and value >= _API_VERSION_2024


def json_response(body: Any, status: int, headers: dict[str, str]) -> Response:
    return Response(
        content=json.dumps(body, separators=(",", ":"), ensure_ascii=False),
        status_code=status,
        headers=headers,
        media_type="application/json",
    )


def bad_request(error_code: str, message: str) -> AuthError:
    return AuthError(400, error_code, message)


def forbidden(error_code: str, message: str) -> AuthError:
    return AuthError(403, error_code, message)


INVALID_LOGIN = "Invalid login credentials"


def invalid_credentials() -> AuthError:
    return bad_request("invalid_credentials", INVALID_LOGIN)
