"""PostgreSQL: one transaction appending W requests of 20 events to the log one after another
(``SqlEvents.append`` each, as a group commit did for each request until ee5b7c1, and still
does for requests that share an event): time per transaction and per event, for W = 1, 10,
30, 60. The cost per event should not grow with W.

    PYTHONPATH=/tmp/pin-$rev/src .venv/bin/python bench/group_append.py [--url URL]

It creates a database of its own on the server (dropped at the end).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta

import psycopg
from sqlalchemy import create_engine

from plaudit.store import migrate
from plaudit.store.ports import NewEventRow
from plaudit.store.sql.repositories import SqlEvents

EVENTS_PER_REQUEST = 20
REPEATS = 5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--url",
        default=os.environ.get(
            "PLAUDIT_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
        ),
        help="a PostgreSQL database to connect to (another is created beside it)",
    )
    args = parser.parse_args()
    name = f"plaudit_bench_{uuid.uuid4().hex[:8]}"
    base = args.url.rsplit("/", 1)[0]
    with psycopg.connect(args.url, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
        try:
            run(f"{base}/{name}".replace("postgresql://", "postgresql+psycopg://", 1))
        finally:
            admin.execute(f"DROP DATABASE {name} WITH (FORCE)")


def run(url: str) -> None:
    engine = create_engine(url)
    migrate.upgrade(engine)
    with engine.begin() as conn:
        conn.exec_driver_sql("INSERT INTO tenants (id, name, created_at) VALUES ('t', 't', now())")
        conn.exec_driver_sql(
            "INSERT INTO players (id, tenant_id, created_at, updated_at, attributes) "
            "VALUES ('plr_a', 't', now(), now(), '{}')"
        )
    at = datetime.now(UTC) - timedelta(hours=1)
    made = 0
    for writes in (1, 10, 30, 60):
        took = []
        for _ in range(REPEATS):
            with engine.begin() as conn:
                started = time.perf_counter()
                for _ in range(writes):
                    made += 1
                    rows = [
                        NewEventRow(
                            f"evt_{made}_{i}",
                            "lms",
                            f"k{made}_{i}",
                            "x",
                            "plr_a",
                            "a",
                            at,
                            {},
                            None,
                        )
                        for i in range(EVENTS_PER_REQUEST)
                    ]
                    SqlEvents(conn).append("t", rows, at)  # as a request alone did
                took.append(time.perf_counter() - started)
        median = statistics.median(took)
        per_event = median / (writes * EVENTS_PER_REQUEST) * 1e6
        print(
            f"{writes:3} requests x {EVENTS_PER_REQUEST} events in one transaction: "
            f"{median * 1000:7.1f} ms (median of {REPEATS}), {per_event:4.0f} µs an event",
            flush=True,
        )
    engine.dispose()


if __name__ == "__main__":
    main()
