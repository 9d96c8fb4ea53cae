"""A diagnostic engine for smoke tests, load tests and runbooks: predictable, no data needed.

Each turn answers once, quoting what it received ("Recibido (2): hola | ¿precio?"). Messages can
steer it: `#handoff` (or asking for "humano"/"asesor") asks for a handoff; `#fail` makes the
engine raise, to exercise retries and the fall-back handoff; `#replies=N` answers with N
messages; `#delay=MS` puts MS milliseconds before each reply.
"""

from __future__ import annotations

import re
from typing import Any

from jobs.engine.protocol import Reply, TurnInput, TurnResult

AGENT_ID = "diagnostic-v1"
_NUMBER = {"replies": re.compile(r"#replies=(\d{1,2})"), "delay": re.compile(r"#delay=(\d{1,6})")}


class DiagnosticFailure(Exception):
    """Raised on purpose by `#fail`."""


class DiagnosticEngine:
    agent_id = AGENT_ID

    async def decide(self, turn: TurnInput) -> TurnResult:
        texts = [m.text if m.text is not None else f"[{m.type}]" for m in turn.messages]
        joined = " | ".join(texts)
        lowered = joined.lower()
        if "#fail" in lowered:
            raise DiagnosticFailure("failure requested by the message")
        count = _number(lowered, "replies", 1)
        delay = _number(lowered, "delay", 0)
        turns = int(turn.session.state.get("turns", 0)) + 1
        state: dict[str, Any] = {**turn.session.state, "turns": turns}
        handoff = "#handoff" in lowered or "humano" in lowered or "asesor" in lowered
        replies = [
            Reply(
                text=f"Recibido ({len(texts)}): {joined}" if i == 0 else f"Mensaje {i + 1}",
                delay_ms=delay,
                template_id=f"diagnostic:{i}",
            )
            for i in range(count)
        ]
        return TurnResult(
            replies=[] if handoff else replies,
            mode="handoff" if handoff else "conversacion",
            state=state,
            intent="handoff" if handoff else "echo",
            confidence=100.0,
            handoff=handoff,
            handoff_reason="customer asked for a human" if handoff else None,
        )


def _number(text: str, key: str, default: int) -> int:
    match = _NUMBER[key].search(text)
    return int(match.group(1)) if match else default
