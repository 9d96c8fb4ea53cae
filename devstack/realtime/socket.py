"""The WebSocket endpoint (`/realtime/v1/websocket`, `/socket/websocket`): the checks Realtime
makes on the upgrade, then one `Connection` with its `Channels`."""

from __future__ import annotations

from starlette.responses import JSONResponse
from starlette.websockets import WebSocket

from devstack.realtime import tokens
from devstack.realtime.channels import Channels
from devstack.realtime.connection import Connection
from devstack.realtime.frames import negotiate_vsn
from devstack.realtime.runtime import RealtimeRuntime


async def _refuse(websocket: WebSocket, status: int, error: str) -> None:
    # Realtime answers a refused upgrade with a plain HTTP error and a JSON body.
    await websocket.send_denial_response(JSONResponse({"error": error}, status_code=status))


async def serve(websocket: WebSocket, runtime: RealtimeRuntime) -> None:
    # An `x-api-key` header overrides the query parameter, as in Realtime.
    apikey = websocket.headers.get("x-api-key") or websocket.query_params.get("apikey")
    if not apikey:
        await _refuse(websocket, 401, "API key is missing")
        return
    try:
        tokens.verify(apikey, runtime.jwt_secret)
    except tokens.TokenError as exc:
        await _refuse(websocket, 401, exc.message)
        return
    vsn = negotiate_vsn(websocket.query_params.get("vsn"))
    if vsn is None:
        await _refuse(websocket, 400, "unsupported vsn, use 1.0.0 or 2.0.0")
        return
    await websocket.accept()
    connection = Connection(websocket, vsn, apikey, runtime.limits)
    channels = Channels(connection, runtime)
    runtime.connections.add(connection)
    try:
        await connection.run(channels.handle)
    finally:
        channels.close_all()
        runtime.connections.discard(connection)
