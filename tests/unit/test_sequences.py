from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from plaudit.domain.sequences import gaps_between, merge_runs, runs_of


def test_runs_of_compresses_consecutive_numbers_and_ignores_repeats() -> None:
    assert runs_of([5, 1, 2, 3, 3, 7, 8]) == [(1, 3), (5, 5), (7, 8)]


def test_gaps_are_the_missing_numbers_between_runs() -> None:
    assert gaps_between([(1, 3), (5, 5), (9, 10)]) == [(4, 4), (6, 8)]
    assert gaps_between([(1, 10)]) == []
    assert gaps_between([]) == []


def test_merging_touching_runs_joins_them() -> None:
    assert merge_runs([(1, 3), (7, 9)], [(4, 6)]) == [(1, 9)]
    assert merge_runs([(1, 3)], [(5, 6)]) == [(1, 3), (5, 6)]


@given(st.lists(st.sets(st.integers(0, 300), max_size=40), max_size=8))
def test_merging_batches_in_any_split_equals_runs_of_everything(batches: list[set[int]]) -> None:
    runs: list[tuple[int, int]] = []
    for batch in batches:
        runs = merge_runs(runs, runs_of(batch))
    everything = set().union(*batches) if batches else set()
    assert runs == runs_of(everything)
    if everything:
        missing = {n for a, b in gaps_between(runs) for n in range(a, b + 1)}
        assert missing == set(range(min(everything), max(everything) + 1)) - everything
