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
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import psycopg
import redis

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `python bench/step_cost.py`: tests is a package here
    sys.path.insert(0, str(ROOT))

from tests.support.postgres import scratch_database  # noqa: E402
from tests.support.redis_keys import REDIS_URL, delete_prefix, unique_prefix  # noqa: E402

from bench.e2e import RULESET  # noqa: E402
from bench.ingest import cpu_seconds  # noqa: E402
from plaudit.bootstrap import build, prepare_embedded  # noqa: E402
from plaudit.domain.events import IncomingEvent  # noqa: E402
from plaudit.settings import LeaderboardSettings, Settings  # noqa: E402

PLAYERS = 1000
HELD = list(range(8))  # a worker's share of the 16 partitions, with one other worker


def backends_cpu(conn: psycopg.Connection[tuple[int]], database: str) -> float:
    """Seconds of CPU used so far by the database's other backends (still connected)."""
    pids = [
        pid
        for (pid,) in conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            (database,),
        )
    ]
    return sum(cpu_seconds(pid) or 0.0 for pid in pids)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20, help="new events before each step")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--warm-up", type=int, default=200, help="untimed steps first")
    args = parser.parse_args()
    prefix = unique_prefix()
    client = redis.Redis.from_url(REDIS_URL)
    try:
        with scratch_database("bench") as url, tempfile.TemporaryDirectory() as data:
            run(url, prefix, Path(data), args)
    finally:
        delete_prefix(client, prefix)
        client.close()


def run(url: str, prefix: str, data: Path, args: argparse.Namespace) -> None:
    settings = Settings(
        data_dir=data,
        database_url=url,
        redis_url=REDIS_URL,
        leaderboards=LeaderboardSettings(redis_prefix=prefix),
        _env_file=None,
    )
    c = build(settings)
    prepare_embedded(c)
    tenant = c.default_tenant
    view = c.rulesets.create(tenant, "bench", RULESET)
    c.rulesets.publish(tenant, view.record.id, "bench")
    when = c.clock() - timedelta(hours=1)
    counter = 0

    def log(count: int) -> None:
        nonlocal counter
        batch = []
        for _ in range(count):
            counter += 1
            batch.append(
                IncomingEvent(
                    f"e{counter}",
                    "lms",
                    "task.done",
                    f"u{counter * 7919 % PLAYERS}",
                    when,
                    {"points": 1 + counter % 9},
                )
            )
        c.ingest.ingest(tenant, batch)

    log(PLAYERS)  # every player exists
    while c.scoring.score_partitions(list(range(16))).events:
        pass
    c.leaderboards.sync()
    database = url.rsplit("/", 1)[1].split("?", 1)[0]
    watcher = psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"))
    steps: list[tuple[float, float]] = []
    syncs: list[tuple[float, float]] = []
    scored = 0
    for n in range(args.warm_up + args.steps):
        log(args.events)
        timed = n >= args.warm_up
        client0, server0 = time.process_time(), backends_cpu(watcher, database)
        outcome = c.scoring.score_partitions(HELD)
        client1, server1 = time.process_time(), backends_cpu(watcher, database)
        c.leaderboards.sync()
        client2, server2 = time.process_time(), backends_cpu(watcher, database)
        if timed:
            scored += outcome.events
            steps.append((client1 - client0, server1 - server0))
            syncs.append((client2 - client1, server2 - server1))
    watcher.close()
    c.close()
    print(f"{args.steps} steps of {scored / args.steps:.1f} events (of {args.events} logged each)")
    for name, rows in (("scoring step", steps), ("projector sync", syncs)):
        client = statistics.fmean(r[0] for r in rows) * 1e3
        server = statistics.fmean(r[1] for r in rows) * 1e3
        print(f"  {name}: client {client:.2f} ms, server {server:.2f} ms of CPU (mean)")


if __name__ == "__main__":
    main()
