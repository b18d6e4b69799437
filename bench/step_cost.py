"""PostgreSQL: the CPU of a small scale-out scoring step, the client's and the server's.

At low and moderate rates a worker steps whenever a stream message arrives, so each step
scores a few events and its fixed cost (statements, round trips) is most of the workers'
and PostgreSQL's CPU. This runs the same steps as ``plaudit worker`` (``score_partitions``
over 8 partitions, then the leaderboard projector's sync into Redis) in one process, with
``--events`` new events logged before each step, and reports per step: this process's CPU
(``time.process_time``) and the CPU of every PostgreSQL backend of the database
(``/proc/<pid>/stat``), each step's and each sync's.

    PYTHONPATH=/tmp/pin-$rev/src .venv/bin/python bench/step_cost.py [--events 20] [--steps 2000]

It creates and migrates a database of its own on PLAUDIT_TEST_POSTGRES_URL's server and
uses Redis at PLAUDIT_TEST_REDIS_URL under a key prefix of its own; both go at the end.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `python bench/step_cost.py`: bench is a package here
    sys.path.insert(0, str(ROOT))

from bench.e2e import ACTORS  # noqa: E402
from bench.harness import bench_container, task_events  # noqa: E402

HELD = list(range(8))  # a worker's share of the 16 partitions, with one other worker


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20, help="new events before each step")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--warm-up", type=int, default=200, help="untimed steps first")
    args = parser.parse_args()
    with bench_container() as (c, backends):
        tenant = c.default_tenant
        when = c.clock() - timedelta(hours=1)
        logged = 0

        def log(count: int) -> None:
            nonlocal logged
            c.ingest.ingest(tenant, task_events(logged + 1, count, when))
            logged += count

        log(ACTORS)  # every player exists
        while c.scoring.score_partitions(list(range(16))).events:
            pass
        c.leaderboards.sync()
        steps: list[tuple[float, float]] = []
        syncs: list[tuple[float, float]] = []
        scored = 0
        for n in range(args.warm_up + args.steps):
            log(args.events)
            timed = n >= args.warm_up
            client0, server0 = time.process_time(), backends.cpu()
            outcome = c.scoring.score_partitions(HELD)
            client1, server1 = time.process_time(), backends.cpu()
            c.leaderboards.sync()
            client2, server2 = time.process_time(), backends.cpu()
            if timed:
                scored += outcome.events
                steps.append((client1 - client0, server1 - server0))
                syncs.append((client2 - client1, server2 - server1))
    print(f"{args.steps} steps of {scored / args.steps:.1f} events (of {args.events} logged each)")
    for name, rows in (("scoring step", steps), ("projector sync", syncs)):
        client = statistics.fmean(r[0] for r in rows) * 1e3
        server = statistics.fmean(r[1] for r in rows) * 1e3
        print(f"  {name}: client {client:.2f} ms, server {server:.2f} ms of CPU (mean)")


if __name__ == "__main__":
    main()
