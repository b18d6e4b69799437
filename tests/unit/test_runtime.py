"""The long-running processes' collector settings."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from plaudit.runtime import YOUNG_THRESHOLD, settle


@pytest.fixture
def restored() -> Iterator[None]:
    before = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*before)


@pytest.mark.usefixtures("restored")
def test_settling_keeps_the_collector_off_what_was_built_before() -> None:
    kept = [[i] for i in range(1000)]  # containers the collector tracks
    settle()
    assert gc.get_freeze_count() >= len(kept)
    assert gc.get_threshold()[0] == YOUNG_THRESHOLD
    collected = {id(x) for x in gc.get_objects(generation=2)}  # what a full collection visits
    assert not any(id(x) in collected for x in kept)
