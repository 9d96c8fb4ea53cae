"""The WhatsApp Cloud API stand-in (Graph API and 360dialog shapes) under `/whatsapp`."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from devstack.state import DevstackState
from devstack.whatsapp import control, send, stand_in


def routes(state: DevstackState) -> list[BaseRoute]:
    runtime = stand_in.of(state)

    async def meta_messages(request: Request) -> Response:
        return await send.messages(
            request,
            runtime,
            provider=send.META,
            phone_number_id=request.path_params["phone_number_id"],
        )

    async def d360_messages(request: Request) -> Response:
        return await send.messages(request, runtime, provider=send.D360, phone_number_id=None)

    async def meta_lookup(request: Request) -> Response:
        return await send.lookup(
            request,
            runtime,
            provider=send.META,
            phone_number_id=request.path_params["phone_number_id"],
        )

    async def d360_lookup(request: Request) -> Response:
        return await send.lookup(request, runtime, provider=send.D360, phone_number_id=None)

    async def requests(request: Request) -> Response:
        return await control.requests(request, runtime)

    async def faults(request: Request) -> Response:
        return await control.faults(request, runtime)

    async def webhooks(request: Request) -> Response:
        return await control.webhooks(request, runtime)

    return [
        Route("/whatsapp/_control/requests", requests, methods=["GET", "DELETE"]),
        Route("/whatsapp/_control/faults", faults, methods=["GET", "POST", "DELETE"]),
        Route("/whatsapp/_control/webhooks", webhooks, methods=["GET"]),
        Route("/whatsapp/360dialog/messages", d360_messages, methods=["POST"]),
        Route("/whatsapp/{version}/{phone_number_id}/messages", meta_messages, methods=["POST"]),
        Route("/whatsapp/360dialog/health_status", d360_lookup, methods=["GET"]),
        Route("/whatsapp/{version}/{phone_number_id}", meta_lookup, methods=["GET"]),
    ]


async def stop(state: DevstackState) -> None:
    await stand_in.stop(state)
