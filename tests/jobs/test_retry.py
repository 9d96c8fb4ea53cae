"""The retry policy on its own, without a worker: job retries and the throttle back-off."""

from __future__ import annotations

from datetime import timedelta

from jobs import retry


def test_a_failing_turn_waits_twice_as_long_each_try() -> None:
    assert [retry.turn_retry_delay(t, 2.0) for t in (1, 2, 3)] == [
        timedelta(seconds=2),
        timedelta(seconds=4),
        timedelta(seconds=8),
    ]


def test_a_throttled_send_backs_off_doubling_within_its_span_then_gives_up() -> None:
    backoff = retry.ThrottleBackoff(first_seconds=1.0, span_seconds=20.0)
    assert [backoff.wait(a, 130429) for a in range(5)] == [1.0, 2.0, 4.0, 8.0, None]


def test_a_long_span_outlasts_minutes_of_throttling_a_minute_at_a_time() -> None:
    backoff = retry.ThrottleBackoff(first_seconds=1.0, span_seconds=300.0)
    waits: list[float] = []
    while (wait := backoff.wait(len(waits), 130429)) is not None:
        waits.append(wait)
    assert waits[:7] == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0]
    assert max(waits) == retry.MAX_THROTTLE_WAIT_SECONDS
    assert 240 < sum(waits) <= 300


def test_the_pair_rate_limit_waits_at_least_six_back_offs() -> None:
    backoff = retry.ThrottleBackoff(first_seconds=0.5, span_seconds=8.0)
    assert backoff.wait(0, retry.PAIR_RATE_CODE) == 3.0
    assert backoff.wait(1, retry.PAIR_RATE_CODE) == 3.0
    assert backoff.wait(2, retry.PAIR_RATE_CODE) is None
