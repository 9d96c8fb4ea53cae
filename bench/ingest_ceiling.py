"""The ceiling of the ingest benchmark: a bare FastAPI endpoint that verifies nothing and stores
the posted message with one asyncpg insert into an existing conversation. What the bridge adds
on top (signature, parsing, supabase-py, the stand-in, the full ingest function) is the gap
between its rows and these.

    BENCH_CEILING_DATABASE_URL=... BENCH_CEILING_WORKSPACE_ID=... \\
    BENCH_CEILING_CONVERSATION_ID=... uvicorn bench.ingest_ceiling:app --workers N
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

INSERT = """
insert into public.messages
  (workspace_id, conversation_id, wamid, direction, type, content, timestamp, processed_by_agent)
values ($1, $2, $3, 'inbound', $4, $5::jsonb, to_timestamp($6), false)
on conflict (wamid) do nothing
"""


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    # The same pool size as the stand-in's, so neither side wins on connections alone.
    app.state.pool = await asyncpg.create_pool(
        os.environ["BENCH_CEILING_DATABASE_URL"], min_size=1, max_size=20
    )
    app.state.workspace_id = uuid.UUID(os.environ["BENCH_CEILING_WORKSPACE_ID"])
    app.state.conversation_id = uuid.UUID(os.environ["BENCH_CEILING_CONVERSATION_ID"])
    try:
        yield
    finally:
        await app.state.pool.close()


app = FastAPI(lifespan=_lifespan)


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/webhooks/whatsapp")
async def receive(request: Request) -> JSONResponse:
    message = json.loads(await request.body())["entry"][0]["changes"][0]["value"]["messages"][0]
    kind = message.get("type", "unknown")
    pool: asyncpg.Pool = request.app.state.pool
    await pool.execute(
        INSERT,
        request.app.state.workspace_id,
        request.app.state.conversation_id,
        message["id"],
        kind,
        json.dumps(message.get(kind) or {}),
        float(message["timestamp"]),
    )
    return JSONResponse({"received": True})
