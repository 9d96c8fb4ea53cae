"""`bridge serve`: uvicorn around the app factory."""

from __future__ import annotations

import uvicorn


def serve(*, host: str, port: int, workers: int = 1, limit_concurrency: int | None = None) -> int:
    # Past `limit_concurrency` requests in flight uvicorn answers 503 at once: the provider
    # retries later, instead of every request slowing down until all of them time out.
    uvicorn.run(
        "bridge.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        limit_concurrency=limit_concurrency,
    )
    return 0
