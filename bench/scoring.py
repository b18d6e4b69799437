"""Scoring benchmark: events/s evaluated and committed with 50 rules over 10 event types,
the cost of CEL within it, and a full replay of the log (time and peak memory).

    .venv/bin/python bench/scoring.py [--events 200000] [--players 5000] [--replay-processes 2]

Runs in-process on a fresh SQLite data directory (the embedded mode), so it measures the
scoring path itself: read the log, evaluate, write ledger/awards/states, commit.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import resource
import shutil
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from plaudit.bootstrap import build, prepare_embedded
from plaudit.domain.events import IncomingEvent
from plaudit.rules.document import load
from plaudit.rules.evaluate import EventFacts, PlayerFacts, evaluate
from plaudit.rules.state import PlayerState
from plaudit.runtime import collect_rarely
from plaudit.settings import Settings

TYPES = [f"type{t}" for t in range(10)]


def ruleset() -> str:
    """50 points rules (5 per event type, one per band of the score, so one matches an event)
    and 10 tiered badges."""
    lines = ["program: {time_zone: Europe/Paris}", "currencies: [xp, coins]", "rules:"]
    for t, type_ in enumerate(TYPES):
        for r in range(5):
            lines += [
                f"  - id: r{t}-{r}",
                f"    on: {type_}",
                f"    when: event.properties.score >= {r * 20}"
                f" && event.properties.score < {r * 20 + 20}",
                f'    award: {{xp: {r + 1}, coins: "event.properties.score / 10"}}',
            ]
            if r == 4:
                lines.append("    cap: {per: day, max: {xp: 50}}")
    lines += ["levels:", "  currency: xp", "  thresholds: [{name: a, at: 0}, {name: b, at: 500}]"]
    lines.append("badges:")
    for t, type_ in enumerate(TYPES):
        lines += [
            f"  - id: b{t}",
            f"    name: B{t}",
            f"    criteria: {{count: {{on: {type_}, at_least: 20}}}}",
            "    tiers: [{name: bronze, at_least: 5}, {name: silver, at_least: 20}]",
        ]
    return "\n".join(lines) + "\n"


def events(count: int, players: int, start: datetime) -> list[IncomingEvent]:
    return [
        IncomingEvent(
            key=f"e{i}",
            source="bench",
            type=TYPES[i % len(TYPES)],
            actor=f"u{(i * 7919) % players}",
            occurred_at=start + timedelta(seconds=i),
            properties={"score": (i * 37) % 101, "course": f"c{i % 13}"},
        )
        for i in range(count)
    ]


def cel_cost(source: str, sample: list[IncomingEvent]) -> tuple[float, float]:
    """(µs per event evaluated in memory, µs of that per expression evaluation)."""
    _, compiled = load(source)
    states: dict[str, PlayerState] = {}
    started = time.perf_counter()
    for e in sample:
        facts = EventFacts(e.key, e.type, e.source, e.actor, e.occurred_at, e.properties)
        evaluate(compiled, states.setdefault(e.actor, PlayerState()), facts, PlayerFacts(e.actor))
    per_event = (time.perf_counter() - started) / len(sample) * 1e6
    expression = compiled.points_by_type[TYPES[0]][0].matcher.when
    assert expression is not None
    from plaudit.rules.expressions import activation

    act = activation({"properties": {"score": 50}}, {})
    n = 20_000
    started = time.perf_counter()
    for _ in range(n):
        expression.evaluate(act)
    return per_event, (time.perf_counter() - started) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--players", type=int, default=5_000)
    parser.add_argument(
        "--replay-processes",
        type=int,
        default=min(8, os.cpu_count() or 1),
        help="processes sharing out the replay (as `plaudit replay`; default: one per CPU)",
    )
    parser.add_argument(
        "--no-ahead",
        action="store_true",
        help="score in this process only (no helper process evaluating the next batch)",
    )
    parser.add_argument(
        "--default-gc",
        action="store_true",
        help="keep Python's default collector thresholds (the product's processes raise them)",
    )
    args = parser.parse_args()
    if not args.default_gc:
        collect_rarely()  # as plaudit serve and plaudit worker do
    root = Path(tempfile.mkdtemp(prefix="plaudit-bench-scoring-"))
    try:
        settings = Settings(data_dir=root, _env_file=None)
        settings.worker.ahead = not args.no_ahead
        container = build(settings)
        prepare_embedded(container)
        source = ruleset()
        view = container.rulesets.create("default", "bench", source)
        container.rulesets.publish("default", view.record.id, "bench")
        start = datetime(2026, 5, 1, tzinfo=UTC)
        all_events = events(args.events, args.players, start)

        t0 = time.perf_counter()
        for i in range(0, len(all_events), 1000):
            container.ingest.ingest("default", all_events[i : i + 1000])
        ingest_s = time.perf_counter() - t0

        t0 = time.perf_counter()
        points = 0
        while (outcome := container.scoring.score_pending()).events:
            points += outcome.points
        score_s = time.perf_counter() - t0
        ahead = (container.scoring.ahead_written, container.scoring.ahead_dropped)

        t0 = time.perf_counter()
        replayed = container.scoring.replay(processes=args.replay_processes)
        replay_s = time.perf_counter() - t0
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        replay_mb = container.scoring.replay_peak_rss / 2**20
        per_event_us, per_expression_us = cel_cost(source, all_events[:20_000])
        container.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)

    print(
        f"machine: {platform.processor() or platform.machine()}, Python {platform.python_version()}"
    )
    print(f"date: {datetime.now(UTC).isoformat(timespec='seconds')}")
    print(f"events: {args.events}, players: {args.players}, rules: 50 points + 10 tiered badges")
    print(f"cycle collector thresholds: {gc.get_threshold()}")
    print(f"ingest (service, batches of 1,000): {args.events / ingest_s:,.0f} events/s")
    print(
        f"scoring (read log, evaluate, write, commit): {args.events / score_s:,.0f} events/s "
        f"({points:,} ledger entries)"
    )
    print(
        f"scoring ahead: {'off' if args.no_ahead else 'on'}, {ahead[0]} batches of "
        f"{container.settings.worker.batch:,} evaluated by the helper process, {ahead[1]} dropped"
    )
    print(
        f"replay of {replayed:,} events in {args.replay_processes} process(es): {replay_s:.1f} s "
        f"({replayed / replay_s:,.0f} events/s)"
    )
    print(f"peak memory (RSS): this process {peak_mb:,.0f} MB", end="")
    print(f", each replay process at most {replay_mb:,.0f} MB" if replay_mb else "")
    print(
        f"evaluation in memory: {per_event_us:.1f} µs per event; "
        f"one CEL condition: {per_expression_us:.2f} µs"
    )


if __name__ == "__main__":
    main()
