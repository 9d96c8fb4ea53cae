"""The collector settings the long-running processes take once started (`bridge.gc_tuning`)."""

from __future__ import annotations

import gc
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


@pytest.mark.usefixtures("restored_collector")
def test_cycles_made_after_startup_are_still_collected() -> None:
    gc_tuning.settle_after_startup()
    cycle: list[object] = []
    cycle.append(cycle)
    del cycle
    assert gc.collect() >= 1
