"""The collector settings the long-running processes take once started (`bridge.gc_tuning`)."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from bridge import gc_tuning


@pytest.fixture
def restored_collector() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


@pytest.mark.usefixtures("restored_collector")
def test_startup_objects_leave_later_collections_and_young_ones_wait_longer() -> None:
    kept = [{"made": "at start-up"}]
    older = gc.get_threshold()[1:]
    gc_tuning.settle_after_startup()
    assert gc.get_freeze_count() > 0
    # Frozen objects are in no generation a collection walks.
    assert all(o is not kept for o in gc.get_objects())
    assert gc.get_threshold() == (gc_tuning.YOUNG_THRESHOLD, *older)


class _Node:
    def __init__(self) -> None:
        self.me = self


@pytest.mark.usefixtures("restored_collector")
def test_cycles_made_after_startup_are_collected_without_being_asked() -> None:
    gc_tuning.settle_after_startup()
    ran: list[int] = []

    def note(phase: str, info: dict[str, int]) -> None:
        if phase == "stop":
            ran.append(info["generation"])

    cycle = weakref.ref(_Node())  # garbage at once, but only a collection can free it
    gc.callbacks.append(note)
    try:
        # More net allocations than the young threshold: a collection must follow on its own.
        kept: list[list[int]] = [[] for _ in range(2 * gc_tuning.YOUNG_THRESHOLD)]
    finally:
        gc.callbacks.remove(note)
    assert len(kept) == 2 * gc_tuning.YOUNG_THRESHOLD
    assert ran, "no automatic collection ran"
    assert cycle() is None
