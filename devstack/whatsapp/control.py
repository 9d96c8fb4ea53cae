"""Control endpoints for tests and the demo, under `/whatsapp/_control`.

- `GET /requests[?phone_number_id=…&to=…&kind=send|read|typing|invalid|unauthorized&since=<seq>]`
  → `{"requests": [entry, …]}` oldest first; `DELETE /requests` → `{"cleared": n}`.
- `POST /faults` with a fault object (see `devstack.whatsapp.faults`) → 201 `{"fault": {…}}`;
  `GET /faults` → `{"faults": […]}` (pending); `DELETE /faults` → `{"cleared": n}`.
- `GET /webhooks` → `{"deliveries": […]}`: the status webhooks posted and how each went.
"""

from __future__ import annotations

import json

from starlette.requests import Request
from starlette.responses import JSONResponse

from devstack.whatsapp.faults import InvalidFault
from devstack.whatsapp.stand_in import WhatsAppStandIn


async def requests(request: Request, stand_in: WhatsAppStandIn) -> JSONResponse:
    if request.method == "DELETE":
        return JSONResponse({"cleared": stand_in.requests.clear()})
    query = request.query_params
    since = query.get("since", "0")
    if not since.isdigit():
        return JSONResponse({"error": "since must be a sequence number"}, status_code=400)
    entries = stand_in.requests.entries(
        phone_number_id=query.get("phone_number_id"),
        to=query.get("to"),
        kind=query.get("kind"),
        since=int(since),
    )
    return JSONResponse({"requests": entries})


async def faults(request: Request, stand_in: WhatsAppStandIn) -> JSONResponse:
    if request.method == "DELETE":
        return JSONResponse({"cleared": stand_in.faults.clear()})
    if request.method == "GET":
        return JSONResponse({"faults": [f.as_json() for f in stand_in.faults.pending()]})
    try:
        spec = json.loads(await request.body())
        fault = stand_in.faults.add(spec)
    except ValueError as exc:  # InvalidFault is a ValueError, as is malformed JSON
        reason = str(exc) if isinstance(exc, InvalidFault) else "the body is not JSON"
        return JSONResponse({"error": reason}, status_code=400)
    return JSONResponse({"fault": fault.as_json()}, status_code=201)


async def webhooks(request: Request, stand_in: WhatsAppStandIn) -> JSONResponse:
    return JSONResponse({"deliveries": list(stand_in.webhooks.deliveries)})
