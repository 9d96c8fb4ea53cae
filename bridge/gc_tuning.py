"""Garbage-collector settings for the long-running processes (API, worker).

With CPython's defaults (a young collection every 700 net container allocations), a webhook POST
set off about one young collection, and every so often a full collection walked every object the
process had made at start-up (FastAPI, pydantic, supabase-py), stalling every request in flight.
Freezing what start-up made moves it out of every later collection, and a higher young threshold
lets reference counting free the short-lived objects of a request before a collection would walk
them. What the collector cost before and after: docs/performance.md (webhook intake).
"""

from __future__ import annotations

import gc

# Net container allocations between young collections (CPython's default: 700). A request's
# objects are freed by reference counting long before this many pile up; what survives a cycle
# still gets collected, a little later.
YOUNG_THRESHOLD = 10_000


def settle_after_startup() -> None:
    """Call once the process has built what it keeps (app, clients, pools)."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, older, oldest)
