"""PostgreSQL: one transaction appending W requests of 20 events to the log one after another
(``SqlEvents.append`` each, as a group commit did for each request until ee5b7c1, and still
does for requests that share an event): time per transaction and per event, for W = 1, 10,
30, 60. The cost per event should not grow with W.

    PYTHONPATH=/tmp/pin-$rev/src .venv/bin/python bench/group_append.py

It creates and migrates a database of its own on PLAUDIT_TEST_POSTGRES_URL's server
(``tests.support.postgres.scratch_database``), dropped at the end.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import create_engine

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `python bench/group_append.py`: tests is a package here
    sys.path.insert(0, str(ROOT))

from tests.support.postgres import scratch_database  # noqa: E402

from plaudit.store.ports import NewEventRow  # noqa: E402
from plaudit.store.sql.repositories import SqlEvents  # noqa: E402

EVENTS_PER_REQUEST = 20
REPEATS = 5


def main() -> None:
    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args()
    with scratch_database("bench") as url:
        run(url)


def run(url: str) -> None:
    engine = create_engine(url)
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
