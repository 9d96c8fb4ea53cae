"""Every request the WhatsApp stand-in received, newest last, for tests and the demo to inspect.

Bounded: the oldest entries are forgotten past `capacity`, so a long-running local stack does not
grow without limit. An entry is added when the request arrives and completed when it is answered,
so a request held by a timeout fault is visible while it is held.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

# Headers worth keeping: who sent it (the credential) and how.
HEADERS_OF_INTEREST = ("authorization", "d360-api-key", "content-type", "user-agent")


class RequestLog:
    def __init__(self, capacity: int = 10_000) -> None:
        self._entries: deque[dict[str, Any]] = deque(maxlen=capacity)
        self._sequence = itertools.count(1)

    def start(
        self,
        *,
        method: str,
        path: str,
        provider: str,
        phone_number_id: str | None,
        headers: Mapping[str, str],
        body: Any,
    ) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "seq": next(self._sequence),
            "time": datetime.now(UTC).isoformat(),
            "method": method,
            "path": path,
            "provider": provider,
            "phone_number_id": phone_number_id,
            "headers": {k: headers[k] for k in HEADERS_OF_INTEREST if k in headers},
            "body": body,
            "kind": None,
            "to": body.get("to") if isinstance(body, dict) else None,
            "fault": None,
            "response": None,
        }
        self._entries.append(entry)
        return entry

    def entries(
        self,
        *,
        phone_number_id: str | None = None,
        to: str | None = None,
        kind: str | None = None,
        since: int = 0,
    ) -> list[dict[str, Any]]:
        return [
            dict(e)
            for e in self._entries
            if e["seq"] > since
            and (phone_number_id is None or e["phone_number_id"] == phone_number_id)
            and (to is None or e["to"] == to)
            and (kind is None or e["kind"] == kind)
        ]

    def clear(self) -> int:
        count = len(self._entries)
        self._entries.clear()
        return count
