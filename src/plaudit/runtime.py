"""Process-wide settings of the long-running processes (``plaudit serve``, ``plaudit worker``,
the API processes of the scale-out mode, the replay's processes)."""

from __future__ import annotations

import gc

# Scoring allocates containers by the hundred per event (events, effects, rows), nearly all
# freed at once by reference counting, while the player states it keeps between batches are
# long-lived containers by the ten thousand. At the collector's default threshold (a young
# collection every 700 allocations) the collector took a fifth of the scoring worker's time:
# 12,500 -> 15,300 events/s with this setting (bench/scoring.py, 200,000 events, 20,000
# players), and 13 % of a replay's processes. A young collection now sees up to 50,000
# objects (a few milliseconds); cycles are still collected, just in larger rounds.
YOUNG_THRESHOLD = 50_000


def collect_rarely() -> None:
    """Run the cycle collector in larger, rarer rounds (this process's lifetime)."""
    gc.set_threshold(YOUNG_THRESHOLD, 20, 100)


def settle() -> None:
    """Once a long-running process has built what it keeps for its lifetime (modules, the
    container, compiled rules, the app): collect once, then keep the collector off all of
    it, and collect rarely from then on. Without the freeze a full collection went over
    every object of the startup, holding the GIL: 112 and 118 ms in the two workers of the
    end-to-end bench at 5,000 events/s (one each in 30 s), a stall of every scoring step of
    that moment; 4 ms with it."""
    gc.collect()
    gc.freeze()
    collect_rarely()
