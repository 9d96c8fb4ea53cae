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


def test_a_throttled_send_backs_off_doubling_then_gives_up() -> None:
    waits = [retry.throttle_wait(a, 130429, 1.0) for a in range(retry.MAX_THROTTLE_RETRIES + 1)]
    assert waits == [1.0, 2.0, 4.0, None]


def test_the_pair_rate_limit_waits_at_least_six_back_offs() -> None:
    assert retry.throttle_wait(0, retry.PAIR_RATE_CODE, 0.5) == 3.0
    assert retry.throttle_wait(3, retry.PAIR_RATE_CODE, 0.5) is None
