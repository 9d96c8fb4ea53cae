"""When the worker tries again, and how long it waits: the one place for retry policy.

- A turn whose job fails (engine error, lost database connection, ...) is retried by arq with a
  doubling delay; after `MAX_TRIES` the conversation is handed to a human.
- A send WhatsApp throttles is tried again after a doubling back-off; the pair-rate limit
  (one message per ~6 s from one business number to one customer) waits at least 6 back-offs.
  Other send errors are never retried here: a timeout or 5xx has an unknown outcome.
"""

from __future__ import annotations

from datetime import timedelta

# The seed's "2 retries": a third failure hands the conversation to a human.
MAX_TRIES = 3

MAX_THROTTLE_RETRIES = 3
PAIR_RATE_CODE = 131056


def turn_retry_delay(job_try: int, base_seconds: float) -> timedelta:
    return timedelta(seconds=base_seconds * (2 ** (job_try - 1)))


def throttle_wait(attempt: int, code: int, base_seconds: float) -> float | None:
    """Seconds to wait before attempt `attempt + 1` of a throttled send (attempts count from
    0), or None when the send has had all its attempts."""
    if attempt >= MAX_THROTTLE_RETRIES:
        return None
    wait: float = base_seconds * 2**attempt
    if code == PAIR_RATE_CODE:
        wait = max(wait, 6 * base_seconds)
    return wait
