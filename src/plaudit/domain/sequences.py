"""Per-source sequence numbers: received runs and the gaps between them."""

from __future__ import annotations

import itertools
from collections.abc import Iterable

Run = tuple[int, int]  # inclusive [first, last]


def runs_of(numbers: Iterable[int]) -> list[Run]:
    """Compress numbers into sorted, maximal runs of consecutive integers."""
    runs: list[Run] = []
    for n in sorted(set(numbers)):
        if runs and n == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], n)
        else:
            runs.append((n, n))
    return runs


def merge_runs(existing: Iterable[Run], added: Iterable[Run]) -> list[Run]:
    """Union of two sets of runs, as sorted maximal runs (touching runs are joined)."""
    merged: list[Run] = []
    for first, last in sorted([*existing, *added]):
        if merged and first <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], last))
        else:
            merged.append((first, last))
    return merged


def gaps_between(runs: list[Run]) -> list[Run]:
    """Missing numbers between the first and the last received, as inclusive runs."""
    return [(a_last + 1, b_first - 1) for (_, a_last), (b_first, _) in itertools.pairwise(runs)]
