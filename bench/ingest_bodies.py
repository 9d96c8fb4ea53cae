"""Pre-signed webhook bodies for the ingest benchmark: one text message per POST, each with a
wamid never used before in the run, so every 200 should be one stored row (a repeated wamid
would be a duplicate the intake acknowledges without storing)."""

from __future__ import annotations

import itertools
import json
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from devstack.customer import webhook_body
from devstack.whatsapp.status_webhooks import signature


@dataclass(frozen=True)
class SignedBody:
    signature: str
    body: bytes


@dataclass
class BodyFactory:
    phone_number_id: str
    secret: str
    # Customers cycle: a realistic spread of conversations, so the per-conversation row update
    # of the intake is not one hot row every POST queues on.
    customers: int = 1000
    _run: str = field(default_factory=lambda: uuid.uuid4().hex[:8].upper())
    _seq: itertools.count[int] = field(default_factory=itertools.count)

    def make(self, n: int) -> list[SignedBody]:
        return list(self.stream(n))

    def stream(self, n: int) -> Iterator[SignedBody]:
        ts = int(time.time())
        for _ in range(n):
            i = next(self._seq)
            sender = f"573{i % self.customers:09d}"
            payload = webhook_body(
                f"hola, ¿tienen el producto {i}?",
                phone_number_id=self.phone_number_id,
                sender=sender,
                # A customer's profile name stays the same from one message to the next.
                name=f"Cliente {sender[-4:]}",
                wamid=f"wamid.BENCH{self._run}{i:010d}",
                timestamp=ts,
            )
            # Compact separators and escaped non-ASCII, as Meta posts them.
            body = json.dumps(payload, separators=(",", ":")).encode()
            yield SignedBody(signature(body, self.secret), body)


def write_for_wrk(bodies: Iterable[SignedBody], path: Path) -> None:
    """One `signature<TAB>body` per line: compact JSON never holds a raw tab or newline."""
    with path.open("wb") as f:
        for b in bodies:
            f.write(b.signature.encode() + b"\t" + b.body + b"\n")
