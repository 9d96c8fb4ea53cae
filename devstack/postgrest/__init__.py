"""PostgREST under /rest/v1: the RPC endpoint, `POST /rest/v1/rpc/<function>` (and GET for
read-only calls), and table reads and updates, `GET|HEAD|PATCH /rest/v1/<table>`."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from devstack.postgrest import errors, handler, table_handler
from devstack.postgrest.schema_cache import SchemaCache
from devstack.state import DevstackState


def routes(state: DevstackState) -> list[BaseRoute]:
    cache = SchemaCache()

    async def rpc(request: Request) -> Response:
        return await handler.rpc(request, state, cache)

    async def table(request: Request) -> Response:
        return await table_handler.serve(request, state)

    async def elsewhere(request: Request) -> Response:
        # The OpenAPI root and deeper paths are PostgREST features the bridge does not use.
        return errors.not_implemented(
            "The local stand-in serves /rest/v1/rpc/<function> and /rest/v1/<table> only"
        ).response()

    return [
        Route("/rest/v1/rpc/{function}", rpc, methods=_ANY_METHOD),
        Route("/rest/v1/{table}", table, methods=_ANY_METHOD),
        Route("/rest/v1/{rest:path}", elsewhere, methods=_ANY_METHOD),
    ]


# Every method reaches the handlers, which answer unsupported ones as PostgREST does.
_ANY_METHOD = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
