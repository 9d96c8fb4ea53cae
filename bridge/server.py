"""`bridge serve`: uvicorn around the app factory."""

from __future__ import annotations

import uvicorn


def serve(*, host: str, port: int, workers: int = 1) -> int:
    uvicorn.run("bridge.app:create_app", factory=True, host=host, port=port, workers=workers)
    return 0
