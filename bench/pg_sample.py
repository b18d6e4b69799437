"""Where PostgreSQL's time goes during a run, without its extensions or a restart: samples
``pg_stat_activity`` every few milliseconds and counts the active statements (their first
110 characters) and what they waited on. Start it beside a bench:

    .venv/bin/python bench/pg_sample.py --seconds 50 &
    .venv/bin/python bench/e2e.py --only scale-out --events 30000

Each figure is the share of samples in which a backend ran that statement (their sum is
the mean number of busy backends). Reads only; needs a role that sees other sessions'
queries (the superuser on this machine).
"""

from __future__ import annotations

import argparse
import collections
import re
import time

import psycopg

_ACTIVE = (
    "SELECT query, wait_event_type, wait_event FROM pg_stat_activity "
    "WHERE state = 'active' AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--every", type=float, default=0.005, help="seconds between samples")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    statements: collections.Counter[str] = collections.Counter()
    on_cpu: collections.Counter[str] = collections.Counter()
    waits: collections.Counter[tuple[str | None, str | None]] = collections.Counter()
    samples = 0
    with psycopg.connect(args.url, autocommit=True) as conn:
        end = time.monotonic() + args.seconds
        while time.monotonic() < end:
            for query, wait_type, wait in conn.execute(_ACTIVE).fetchall():
                statement = re.sub(r"\s+", " ", query)[:110]
                statements[statement] += 1
                if wait_type is None:
                    on_cpu[statement] += 1
                waits[(wait_type, wait)] += 1
            samples += 1
            time.sleep(args.every)
    print(f"{samples} samples; per statement: active, of which on the CPU (not waiting)")
    for statement, count in statements.most_common(args.top):
        cpu = on_cpu[statement] / samples * 100
        print(f"{count / samples * 100:6.1f}% {cpu:6.1f}% {statement}")
    print("waits (None: on the CPU):")
    for (wait_type, wait), count in waits.most_common(10):
        print(f"{count / samples * 100:6.1f}% {wait_type} {wait}")


if __name__ == "__main__":
    main()
