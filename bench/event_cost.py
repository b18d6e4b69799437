"""PostgreSQL: the CPU an event costs in bulk, per tier: ingestion (the API's service, without
HTTP), scoring (a worker's steps) and the projector's sync, each the client's and the server's.

At 20,000 events/s the scale-out mode on a 2-core machine is bound by the CPU an event costs
(bench/README.md). This runs the same code as ``plaudit serve`` and ``plaudit worker`` in one
process, on the e2e bench's rules and players, so that a change to any of them can be
measured without the noise of HTTP, the stream and scheduling: ``--events`` new events
ingested in requests of ``--batch``, then scored in steps over all 16 partitions, then synced
into Redis; repeated ``--rounds`` times, each round's CPU reported per event.

    PYTHONPATH=/tmp/pin-$rev/src .venv/bin/python bench/event_cost.py [--events 100000]
        [--profile ingest|scoring|sync FILE]   # cProfile of that phase, all rounds

It creates and migrates a database of its own on PLAUDIT_TEST_POSTGRES_URL's server and
uses Redis at PLAUDIT_TEST_REDIS_URL under a key prefix of its own; both go at the end.
"""

from __future__ import annotations

import argparse
import cProfile
import itertools
import statistics
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `python bench/event_cost.py`: bench is a package here
    sys.path.insert(0, str(ROOT))

from bench.harness import Backends, bench_container, task_events  # noqa: E402
from plaudit.bootstrap import Container  # noqa: E402
from plaudit.runtime import settle  # noqa: E402

PHASES = ("ingest", "scoring", "sync")
HALVES = (list(range(8)), list(range(8, 16)))  # two workers' partitions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=100_000, help="events in each round")
    parser.add_argument("--batch", type=int, default=1000, help="events in each request")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", nargs=2, metavar=("PHASE", "FILE"), default=None)
    args = parser.parse_args()
    if args.profile and args.profile[0] not in PHASES:
        parser.error(f"--profile's phase is one of {', '.join(PHASES)}")
    with bench_container() as (c, backends):
        settle()  # the collector as `plaudit serve` and `plaudit worker` run it
        run(c, backends, args)


class Workload:
    """The three phases, as ``plaudit serve`` and ``plaudit worker`` run them: ingestion and
    scoring return how many events they handled."""

    def __init__(self, c: Container, events: int, batch: int) -> None:
        self.c, self.events, self.batch = c, events, batch
        self.when = c.clock() - timedelta(hours=1)
        self.logged = 0

    def ingest(self) -> int:
        for _ in range(0, self.events, self.batch):
            batch = task_events(self.logged + 1, self.batch, self.when)
            self.c.ingest.ingest(self.c.default_tenant, batch)
            self.logged += self.batch
        return self.events

    def scoring(self) -> int:
        """As two workers: each step one half of the partitions, the halves in turn."""
        scored, idle = 0, 0
        for step in itertools.count():
            n = self.c.scoring.score_partitions(HALVES[step % 2]).events
            scored += n
            idle = 0 if n else idle + 1
            if idle == 2:
                break
        return scored

    def sync(self) -> None:
        self.c.leaderboards.sync()


def run(c: Container, backends: Backends, args: argparse.Namespace) -> None:
    work = Workload(c, args.events, args.batch)
    phases: dict[str, Callable[[], int | None]] = {
        "ingest": work.ingest,
        "scoring": work.scoring,
        "sync": work.sync,
    }
    profiled, profile_file = args.profile or (None, None)
    profiler = cProfile.Profile()
    rounds: list[dict[str, tuple[float, float]]] = []
    for r in range(args.rounds):
        costs = {}
        for name, phase in phases.items():
            client0, server0 = time.process_time(), backends.cpu()
            if name == profiled:
                profiler.enable()
            done = phase()
            if name == profiled:
                profiler.disable()
            client1, server1 = time.process_time(), backends.cpu()
            if done is not None and done != args.events:
                raise SystemExit(f"{name}: {done} events of {args.events}")
            costs[name] = (client1 - client0, server1 - server0)
        rounds.append(costs)
        line = ", ".join(
            f"{name} {cl / args.events * 1e6:.1f} + {sv / args.events * 1e6:.1f}"
            for name, (cl, sv) in costs.items()
        )
        print(f"round {r + 1}: µs of CPU an event, client + PostgreSQL: {line}", flush=True)
    report(rounds, args.events)
    if profile_file is not None:
        profiler.dump_stats(profile_file)
        print(f"profile of {profiled} written to {profile_file}")


def report(rounds: list[dict[str, tuple[float, float]]], events: int) -> None:
    print(f"median of {len(rounds)} rounds of {events:,} events, µs of CPU an event:")
    total = 0.0
    for name in PHASES:
        client = statistics.median(r[name][0] for r in rounds) / events * 1e6
        server = statistics.median(r[name][1] for r in rounds) / events * 1e6
        total += client + server
        print(f"  {name:8} client {client:6.1f}   PostgreSQL {server:6.1f}")
    print(f"  all      {total:6.1f}")


if __name__ == "__main__":
    main()
