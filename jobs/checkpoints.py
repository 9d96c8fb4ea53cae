"""Named points of an agent turn where an operator (or a crash test) can kill the worker.

`JOBS_CRASH_AT=<name>` makes the worker SIGKILL itself the first time it reaches that point, the
way a machine failure would stop it: no `finally`, no cleanup. The recovery paths are proven
against exactly these points. Unset (always, in production) this costs one dict lookup.
"""

from __future__ import annotations

import os
import signal

POINTS = (
    "locked",  # lock and fence taken, nothing read yet
    "typing_started",  # typing START broadcast, engine not called
    "decided",  # replies, turns and processed marks committed; nothing sent
    "sending",  # an outbox row marked sending; the API call not made
    "sent",  # the API accepted a message; its wamid not yet recorded
    "handoff_committed",  # handoff transaction committed; handoff message not sent
)


def checkpoint(name: str) -> None:
    if os.environ.get("JOBS_CRASH_AT") == name:
        os.kill(os.getpid(), signal.SIGKILL)
