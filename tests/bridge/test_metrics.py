"""The declared metrics: exported at 0 from the start, counted by name, and summed over
processes in multiprocess mode (what `bridge serve --workers N` turns on)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from bridge.metrics import API_METRICS, REJECT_REASONS, Declared, Metrics
from tests.fixtures.metrics import parse, value


def test_every_metric_is_exported_from_the_start() -> None:
    samples = parse(Metrics().render().decode())
    assert value(samples, "bridge_webhook_failed_batches_total") == 0
    assert value(samples, "bridge_webhook_store_failed_total") == 0
    for reason in REJECT_REASONS:
        assert value(samples, "bridge_webhook_rejected_total", reason=reason) == 0
    assert value(samples, "bridge_webhook_accepted_total", provider="360dialog") == 0
    names = {name for name, _ in samples}
    for name, declared in API_METRICS.items():
        if declared.kind == "counter" and not declared.labels:
            assert name in names


def test_counts_and_observations_by_name_and_label() -> None:
    metrics = Metrics()
    metrics.inc("bridge_webhook_rejected_total", reason="bad_signature")
    metrics.inc("bridge_messages_stored_total", 3)
    metrics.observe("bridge_webhook_duration_seconds", 0.02, status="200")
    metrics.observe("bridge_webhook_duration_seconds", 7.0, status="200")
    assert metrics.value("bridge_webhook_rejected_total", reason="bad_signature") == 1
    assert metrics.value("bridge_messages_stored_total") == 3
    assert metrics.value("bridge_webhook_duration_seconds", status="200") == 2
    samples = parse(metrics.render().decode())
    bucket = "bridge_webhook_duration_seconds_bucket"
    assert value(samples, bucket, status="200", le="0.025") == 1
    assert value(samples, bucket, status="200", le="5.0") == 1
    assert value(samples, bucket, status="200", le="+Inf") == 2
    # Another instance (another app in this process) counts on its own.
    assert Metrics().value("bridge_messages_stored_total") == 0


def test_a_gauge_is_set() -> None:
    metrics = Metrics({"queue_jobs": Declared("gauge", "jobs")})
    metrics.set("queue_jobs", 7)
    assert value(parse(metrics.render().decode()), "queue_jobs") == 7


_COUNT = """
import sys
from bridge.metrics import Metrics
m = Metrics()
m.inc("bridge_messages_stored_total", int(sys.argv[1]))
m.observe("bridge_webhook_duration_seconds", 0.01, status="200")
if sys.argv[1] == "0":
    sys.stdout.write(m.render().decode())
"""


def test_processes_sharing_a_multiprocess_directory_are_summed(tmp_path: Path) -> None:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    outputs = [
        subprocess.run(
            [sys.executable, "-c", _COUNT, n], env=env, capture_output=True, text=True, check=True
        ).stdout
        for n in ("2", "5", "0")
    ]
    samples = parse(outputs[-1])
    assert value(samples, "bridge_messages_stored_total") == 7
    assert value(samples, "bridge_webhook_duration_seconds_count", status="200") == 3
    assert value(samples, "bridge_webhook_failed_batches_total") == 0
