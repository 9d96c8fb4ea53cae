"""Process-local counters exposed at /metrics in Prometheus' text format."""

from __future__ import annotations

from collections import Counter
from threading import Lock

# Counters an operator alerts on, exported from the start (at 0) so that an alert on their
# increase sees the first one, with their meaning.
ALERTING_COUNTERS = {
    "bridge_webhook_failed_batches_total": (
        "Webhook batches the database refused for a data reason; kept as failed events for "
        "`bridge replay` (docs/operations.md)."
    ),
    "bridge_webhook_store_failed_total": (
        "Webhook batches answered 503: the database was unavailable; the provider retries."
    ),
}


class Metrics:
    def __init__(self) -> None:
        self._counts: Counter[tuple[str, tuple[tuple[str, str], ...]]] = Counter(
            {(name, ()): 0 for name in ALERTING_COUNTERS}
        )
        self._lock = Lock()

    def inc(self, name: str, amount: int = 1, **labels: str) -> None:
        with self._lock:
            self._counts[(name, tuple(sorted(labels.items())))] += amount

    def value(self, name: str, **labels: str) -> int:
        return self._counts[(name, tuple(sorted(labels.items())))]

    def render(self) -> str:
        lines: list[str] = []
        with self._lock:
            items = sorted(self._counts.items())
        seen: set[str] = set()
        for (name, labels), count in items:
            if name not in seen:
                seen.add(name)
                if name in ALERTING_COUNTERS:
                    lines.append(f"# HELP {name} {ALERTING_COUNTERS[name]}")
                lines.append(f"# TYPE {name} counter")
            label_text = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
            lines.append(f"{name}{{{label_text}}} {count}" if label_text else f"{name} {count}")
        return "\n".join(lines) + "\n"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
