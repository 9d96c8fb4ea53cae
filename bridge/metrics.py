"""Prometheus metrics (prometheus-client): the declared set of a process, and its /metrics text.

Each process declares its metrics once, by name (`API_METRICS` here, the worker's in
`jobs.metrics`), and counts by name; every metric is exported from the start (unlabelled ones
and the declared label values at 0), so that an alert on an increase sees the first one.

`bridge serve --workers N` sets PROMETHEUS_MULTIPROC_DIR before uvicorn starts its worker
processes (`bridge.api.server`): each process then keeps its values in files there, and a scrape,
whichever process answers it, sums them over all of them, the ones that have since died
included (a counter does not go back when a worker is replaced).

Labels hold small fixed sets (a reason, an outcome, a provider, a status code), never a
conversation, a phone number or free text.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
)
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

# The environment variable that turns on prometheus-client's multiprocess mode; it must be set
# before prometheus_client is imported by the processes that count.
MULTIPROC_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4

# No `<name>_created` series beside each counter and histogram: nothing alerts on them.
disable_created_metrics()  # type: ignore[no-untyped-call]


@dataclass(frozen=True)
class Declared:
    """One metric: its kind, meaning, label names and (for one label) the values exported at 0
    from the start; a histogram's buckets (seconds)."""

    kind: Literal["counter", "histogram", "gauge"]
    help: str
    labels: tuple[str, ...] = ()
    values: tuple[str, ...] = ()
    buckets: tuple[float, ...] = Histogram.DEFAULT_BUCKETS


# Why a webhook POST or GET was refused (`bridge.api.webhook`).
REJECT_REASONS = (
    "body_timeout",
    "body_too_large",
    "bad_signature",
    "missing_signature",
    "invalid_json",
    "json_too_deep",
    "wrong_object",
    "verification_failed",
)
# A webhook's answer time: a store is bounded by BRIDGE_DB_TIMEOUT_SECONDS.
WEBHOOK_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

API_METRICS: dict[str, Declared] = {
    "bridge_webhook_duration_seconds": Declared(
        "histogram",
        "Time to answer a webhook POST, by HTTP status of the answer.",
        labels=("status",),
        buckets=WEBHOOK_BUCKETS,
    ),
    "bridge_webhook_accepted_total": Declared(
        "counter",
        "Signed webhook batches stored (or kept as failed), by provider.",
        labels=("provider",),
        values=("meta", "360dialog"),
    ),
    "bridge_webhook_rejected_total": Declared(
        "counter",
        "Webhook requests refused before storing, by reason (400, 401, 403, 408, 413).",
        labels=("reason",),
        values=REJECT_REASONS,
    ),
    "bridge_webhook_failed_batches_total": Declared(
        "counter",
        "Webhook batches the database refused for a data reason; kept as failed events for "
        "`bridge replay` (docs/operations.md).",
    ),
    "bridge_webhook_store_failed_total": Declared(
        "counter",
        "Webhook batches answered 503: the database was unavailable; the provider retries.",
    ),
    "bridge_webhook_stored_late_total": Declared(
        "counter", "Webhook batches answered 503 whose store committed after all."
    ),
    "bridge_webhook_unroutable_total": Declared(
        "counter", "Webhook entries for a phone_number_id no channel has."
    ),
    "bridge_messages_stored_total": Declared("counter", "Messages stored (new wamids)."),
    "bridge_messages_duplicate_total": Declared(
        "counter", "Messages delivered again (wamids already stored)."
    ),
    "bridge_statuses_applied_total": Declared("counter", "Delivery statuses applied."),
    "bridge_statuses_orphaned_total": Declared(
        "counter", "Delivery statuses for messages not stored here."
    ),
    "bridge_jobs_enqueued_total": Declared("counter", "Turn jobs enqueued by the doorbell."),
    "bridge_enqueue_failed_total": Declared(
        "counter", "Turn jobs the doorbell could not enqueue (Redis); the sweeper enqueues them."
    ),
    "bridge_enqueue_dropped_total": Declared(
        "counter", "Turn jobs dropped from a full doorbell queue; the sweeper enqueues them."
    ),
}


class Metrics:
    """A process's declared metrics in a registry of its own (several apps may run in one test
    process); in multiprocess mode their values also go to the shared directory."""

    def __init__(self, declarations: Mapping[str, Declared] | None = None) -> None:
        self.registry = CollectorRegistry()
        self._metrics: dict[str, Counter | Histogram | Gauge] = {}
        for name, declared in (API_METRICS if declarations is None else declarations).items():
            metric = _build(name, declared, self.registry)
            for value in declared.values:
                metric.labels(value)
            self._metrics[name] = metric

    def inc(self, name: str, amount: float = 1, **labels: str) -> None:
        metric = self._metric(name, labels)
        assert isinstance(metric, Counter | Gauge), name
        metric.inc(amount)

    def observe(self, name: str, value: float, **labels: str) -> None:
        metric = self._metric(name, labels)
        assert isinstance(metric, Histogram), name
        metric.observe(value)

    def set(self, name: str, value: float, **labels: str) -> None:
        metric = self._metric(name, labels)
        assert isinstance(metric, Gauge), name
        metric.set(value)

    def value(self, name: str, **labels: str) -> float:
        """This process's value of a counter or gauge (a histogram's: `<name>_count`)."""
        sample = f"{name}_count" if isinstance(self._metrics[name], Histogram) else name
        return self.registry.get_sample_value(sample, dict(labels)) or 0.0

    def render(self) -> bytes:
        """The text a scrape gets: every process's values in multiprocess mode, else ours."""
        path = os.environ.get(MULTIPROC_DIR_ENV)
        if not path:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=path)  # type: ignore[no-untyped-call]
        return generate_latest(registry)

    def close(self) -> None:
        """A stopping process's live gauges leave the shared directory (its counters stay)."""
        path = os.environ.get(MULTIPROC_DIR_ENV)
        if path:
            multiprocess.mark_process_dead(os.getpid(), path)  # type: ignore[no-untyped-call]

    def _metric(self, name: str, labels: Mapping[str, str]) -> Counter | Histogram | Gauge:
        metric = self._metrics[name]
        return metric.labels(**labels) if labels else metric


def _build(
    name: str, declared: Declared, registry: CollectorRegistry
) -> Counter | Histogram | Gauge:
    if declared.kind == "counter":
        return Counter(name, declared.help, declared.labels, registry=registry)
    if declared.kind == "histogram":
        return Histogram(
            name, declared.help, declared.labels, registry=registry, buckets=declared.buckets
        )
    # A gauge sampled by one process: in multiprocess mode the latest value set wins.
    return Gauge(
        name, declared.help, declared.labels, registry=registry, multiprocess_mode="mostrecent"
    )
