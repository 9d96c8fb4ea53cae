"""`bridge serve`: uvicorn around the app factory."""

from __future__ import annotations

import uvicorn


def serve(
    *,
    host: str,
    port: int,
    workers: int = 1,
    limit_concurrency: int | None = None,
    access_log: bool = False,
) -> int:
    # Past `limit_concurrency` requests in flight uvicorn answers 503 at once: the provider
    # retries later, instead of every request slowing down until all of them time out.
    uvicorn.run(
        "bridge.api.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        limit_concurrency=limit_concurrency,
        # uvicorn's access lines are plain text beside the JSON log, and a webhook already
        # logs what it stored or why it refused (`bridge.api.webhook`): off unless asked for.
        access_log=access_log,
    )
    return 0
