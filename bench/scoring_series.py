"""Scoring only, one configuration per run, with the machine's speed before and after: for
comparing revisions or settings run after run on a noisy machine (bench/scoring.py also
replays and measures CEL, which stretches the time between two configurations).

    PYTHONPATH=/tmp/pin-REV/src .venv/bin/python -m bench.scoring_series [--no-ahead] [--events N]

The rule set and the events are bench/scoring.py's (50 points rules over 10 event types, 10
tiered badges, 20,000 players). Prints one line: events/s scored and committed, and
``python -m timeit "sum(range(1000))"``'s figure before and after the scoring (µs), and the
CPU time an event took in this process and in the helper (steadier than the rate when the
machine is shared).
"""

from __future__ import annotations

import argparse
import resource
import shutil
import tempfile
import time
import timeit
from datetime import UTC, datetime
from pathlib import Path

from bench.scoring import events, ruleset
from plaudit.bootstrap import build, prepare_embedded
from plaudit.runtime import collect_rarely
from plaudit.settings import Settings


def _cpu(who: int) -> float:
    """User and system CPU seconds of this process (or of its ended children)."""
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def _machine_speed() -> float:
    """``sum(range(1000))`` in µs, the best of five."""
    return min(timeit.repeat("sum(range(1000))", number=20_000, repeat=5)) / 20_000 * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--players", type=int, default=20_000)
    parser.add_argument("--no-ahead", action="store_true", help="no helper process")
    parser.add_argument("--label", default="", help="printed first (the revision)")
    args = parser.parse_args()
    collect_rarely()
    root = Path(tempfile.mkdtemp(prefix="plaudit-bench-series-"))
    try:
        settings = Settings(data_dir=root, _env_file=None)
        if hasattr(settings.worker, "ahead"):  # revisions before it have no helper
            settings.worker.ahead = not args.no_ahead
        container = build(settings)
        prepare_embedded(container)
        view = container.rulesets.create("default", "bench", ruleset())
        container.rulesets.publish("default", view.record.id, "bench")
        logged = events(args.events, args.players, datetime(2026, 5, 1, tzinfo=UTC))
        for i in range(0, len(logged), 1000):
            container.ingest.ingest("default", logged[i : i + 1000])
        before = _machine_speed()
        started, cpu = time.perf_counter(), _cpu(resource.RUSAGE_SELF)
        while container.scoring.score_pending().events:
            pass
        seconds = time.perf_counter() - started
        writer = _cpu(resource.RUSAGE_SELF) - cpu
        after = _machine_speed()
        helped = getattr(container.scoring, "ahead_written", 0)
        container.close()  # the helper ends: its time is counted in RUSAGE_CHILDREN
        helper = _cpu(resource.RUSAGE_CHILDREN)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(
        f"{args.label} ahead={'off' if args.no_ahead else 'on'} "
        f"{args.events / seconds:,.0f} events/s, timeit {before:.2f}/{after:.2f} µs, "
        f"{helped} batches by the helper, CPU an event {writer / args.events * 1e6:.1f} µs "
        f"here + {helper / args.events * 1e6:.1f} µs in the helper",
        flush=True,
    )


if __name__ == "__main__":
    main()
