"""When the worker tries again, and how long it waits: the one place for retry policy.

- A turn whose job fails (engine error, lost database connection, ...) is retried by arq with a
  doubling delay; after `MAX_TRIES` the conversation is handed to a human.
- A send WhatsApp throttles is tried again after a doubling back-off (each wait capped at a
  minute) for as long as its span allows (`JOBS_THROTTLE_SPAN_SECONDS`): a throttle says the
  message was not accepted, so waiting it out loses nothing. The pair-rate limit (one message per
  ~6 s from one business number to one customer) waits at least 6 back-offs. Other send errors
  are never retried here: a timeout or 5xx has an unknown outcome.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

# The seed's "2 retries": a third failure hands the conversation to a human.
MAX_TRIES = 3

PAIR_RATE_CODE = 131056
MAX_THROTTLE_WAIT_SECONDS = 60.0


def turn_retry_delay(job_try: int, base_seconds: float) -> timedelta:
    return timedelta(seconds=base_seconds * (2 ** (job_try - 1)))


@dataclass(frozen=True)
class ThrottleBackoff:
    first_seconds: float  # JOBS_SEND_BACKOFF_SECONDS
    span_seconds: float  # JOBS_THROTTLE_SPAN_SECONDS: the most all the waits of one send add up to

    def wait(self, attempt: int, code: int) -> float | None:
        """Seconds to wait before attempt `attempt + 1` of a throttled send (attempts count
        from 0), or None when one more wait would take the send beyond its span."""
        waited = sum(self._step(a, code) for a in range(attempt))
        step = self._step(attempt, code)
        return None if waited + step > self.span_seconds else step

    def _step(self, attempt: int, code: int) -> float:
        wait: float = min(self.first_seconds * 2**attempt, MAX_THROTTLE_WAIT_SECONDS)
        if code == PAIR_RATE_CODE:
            wait = max(wait, 6 * self.first_seconds)
        return wait
