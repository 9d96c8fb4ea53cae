"""Supabase Auth (GoTrue) under /auth/v1: password sign-in, refresh, the signed-in user, logout,
and an admin's read of one user.

Users, sessions and refresh tokens live in the `auth` schema as Auth keeps them (`store`);
access tokens carry Auth's claims, signed with the stand-in's JWT secret (`access_token`).
Other Auth endpoints (sign-up, OTP, OAuth, MFA, the other admin ones) are not served: they
answer 404.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from devstack.gotrue import handler
from devstack.gotrue.errors import AuthError, OAuthError
from devstack.state import DevstackState

logger = logging.getLogger(__name__)

_Endpoint = Callable[[Request, DevstackState], Awaitable[Response]]


def routes(state: DevstackState) -> list[BaseRoute]:
    def serve(endpoint: _Endpoint) -> Callable[[Request], Awaitable[Response]]:
        async def run(request: Request) -> Response:
            try:
                return await endpoint(request, state)
            except (AuthError, OAuthError) as error:
                return error.response(request)
            except Exception:
                logger.exception("Auth stand-in failed on %s %s", request.method, request.url.path)
                return AuthError(500, "unexpected_failure", "Internal Server Error").response(
                    request
                )

        return run

    return [
        Route("/auth/v1/token", serve(handler.token), methods=["POST"]),
        Route("/auth/v1/user", serve(handler.user), methods=["GET"]),
        Route("/auth/v1/logout", serve(handler.logout), methods=["POST"]),
        Route("/auth/v1/admin/users/{user_id}", serve(handler.admin_user), methods=["GET"]),
    ]
