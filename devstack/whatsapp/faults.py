"""Faults queued by tests: the next N matching requests fail in a chosen way, then all is well.

Kinds:
- `graph_error`: a Graph error body with `code` (130429, 131047, 131056, 80007, 4, …) and Meta's
  HTTP status for it (400 for these; `http_status` overrides).
- `http_error`: Meta's own failure, `status` 500 or 503 (a Graph body), or 502/504 (a proxy's
  plain-text page).
- `timeout`: the request is held `seconds`; then `"then": "answer"` sends the message and answers
  late (the message went out but the client stopped listening), `"drop"` sends nothing and
  never answers a client that gave up (one still waiting after `seconds` gets a 504).

A fault matches a request when every selector it names (`to`, `phone_number_id`, `provider`)
equals the request's, so parallel tests that use their own recipients never take each other's
faults. `applies_to` is `send` (messages only, the default) or `any` (read receipts and typing
indicators too). Faults are taken oldest first.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass
from typing import Any, Literal

Kind = Literal["graph_error", "http_error", "timeout"]
KINDS: tuple[Kind, ...] = ("graph_error", "http_error", "timeout")
MAX_HOLD_SECONDS = 300.0


class InvalidFault(ValueError):
    """The fault specification is malformed; the message says why."""


@dataclass
class Fault:
    id: str
    kind: Kind
    remaining: int
    code: int | None = None
    http_status: int | None = None
    seconds: float | None = None
    then: Literal["answer", "drop"] = "answer"
    to: str | None = None
    phone_number_id: str | None = None
    provider: str | None = None
    applies_to: Literal["send", "any"] = "send"

    def matches(
        self, *, to: str | None, phone_number_id: str | None, provider: str, is_send: bool
    ) -> bool:
        return (
            (self.applies_to == "any" or is_send)
            and (self.to is None or self.to == to)
            and (self.phone_number_id is None or self.phone_number_id == phone_number_id)
            and (self.provider is None or self.provider == provider)
        )

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


class FaultQueue:
    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._ids = itertools.count(1)

    def add(self, spec: Any) -> Fault:
        fault = _parse(spec, f"fault-{next(self._ids)}")
        self._faults.append(fault)
        return fault

    def take(
        self, *, to: str | None, phone_number_id: str | None, provider: str, is_send: bool
    ) -> Fault | None:
        """The oldest matching fault, counted down (and removed when used up)."""
        for fault in self._faults:
            if fault.matches(
                to=to, phone_number_id=phone_number_id, provider=provider, is_send=is_send
            ):
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self._faults.remove(fault)
                return fault
        return None

    def pending(self) -> list[Fault]:
        return list(self._faults)

    def clear(self) -> int:
        count = len(self._faults)
        self._faults.clear()
        return count


def _parse(spec: Any, fault_id: str) -> Fault:
    if not isinstance(spec, dict):
        raise InvalidFault("a fault is a JSON object")
    kind = spec.get("kind")
    if kind not in KINDS:
        raise InvalidFault(f"kind must be one of {', '.join(KINDS)}")
    fault = Fault(
        id=fault_id,
        kind=kind,
        remaining=_int(spec, "count", default=1, low=1) or 1,
        to=_text(spec, "to"),
        phone_number_id=_text(spec, "phone_number_id"),
        provider=_text(spec, "provider"),
    )
    applies_to = spec.get("applies_to", "send")
    if applies_to not in ("send", "any"):
        raise InvalidFault("applies_to must be 'send' or 'any'")
    fault.applies_to = applies_to
    if kind == "graph_error":
        fault.code = _int(spec, "code", default=None, low=0)
        if fault.code is None:
            raise InvalidFault("a graph_error needs a code (e.g. 131056)")
        fault.http_status = _int(spec, "http_status", default=None, low=400, high=599)
    elif kind == "http_error":
        fault.http_status = _int(spec, "status", default=500, low=500, high=599)
    else:
        seconds = spec.get("seconds", 30)
        if isinstance(seconds, bool) or not isinstance(seconds, int | float):
            raise InvalidFault("seconds must be a number")
        if not 0 < seconds <= MAX_HOLD_SECONDS:
            raise InvalidFault(f"seconds must be in (0, {MAX_HOLD_SECONDS:g}]")
        fault.seconds = float(seconds)
        then = spec.get("then", "answer")
        if then not in ("answer", "drop"):
            raise InvalidFault("then must be 'answer' or 'drop'")
        fault.then = then
    return fault


def _int(
    spec: dict[str, Any], key: str, *, default: int | None, low: int, high: int | None = None
) -> int | None:
    value = spec.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidFault(f"{key} must be an integer")
    if value < low or (high is not None and value > high):
        raise InvalidFault(f"{key} is out of range")
    return value


def _text(spec: dict[str, Any], key: str) -> str | None:
    value = spec.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidFault(f"{key} must be a string")
    return value
