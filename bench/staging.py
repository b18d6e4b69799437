"""PostgreSQL: the cost of a scoring step's state upsert (``SqlScoring.save_encoded_states``:
COPY into a staging table, then one ``INSERT … SELECT … ON CONFLICT DO UPDATE``) as one
connection ages: 100 players' states per transaction, 1,000 players, in blocks of 500
transactions; per block, wall time and the server backend's CPU per transaction, and the
staging table's size. Flat figures mean the staging table does not grow with use.

    PYTHONPATH=/tmp/pin-$rev/src .venv/bin/python bench/staging.py [--blocks 6]

It creates and migrates a database of its own on PLAUDIT_TEST_POSTGRES_URL's server
(``tests.support.postgres.scratch_database``), dropped at the end.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `python bench/staging.py`: bench and tests are packages here
    sys.path.insert(0, str(ROOT))

from tests.support.postgres import scratch_database  # noqa: E402

from bench.ingest import cpu_seconds  # noqa: E402
from plaudit.store.sql.scoring import SqlScoring  # noqa: E402

PLAYERS = 1000
PER_STEP = 100
BLOCK = 500


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--blocks", type=int, default=6, help="blocks of 500 transactions")
    args = parser.parse_args()
    with scratch_database("bench") as url:
        run(url, args.blocks)


def _backend_cpu(pid: int) -> float:
    """CPU seconds of the server backend (local): what ``cpu_seconds`` reads from /proc."""
    cpu = cpu_seconds(pid)
    if cpu is None:
        raise SystemExit("bench/staging.py reads the server backend's CPU from /proc: Linux only")
    return cpu


def run(url: str, blocks: int) -> None:
    engine = create_engine(url, pool_size=1, max_overflow=0)
    with engine.begin() as conn:
        conn.exec_driver_sql("INSERT INTO tenants (id, name, created_at) VALUES ('t', 't', now())")
    rng = random.Random(1)
    players = [f"plr_{n:026d}" for n in range(PLAYERS)]
    at = datetime.now(UTC)
    step = 0
    print(f"{PER_STEP} states per transaction, {PLAYERS} players, blocks of {BLOCK}")
    print("block  transactions  wall ms/txn  server CPU ms/txn  staging table pages")
    with engine.connect() as conn:
        backend = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
        conn.rollback()
        for block in range(blocks):
            cpu, start = _backend_cpu(backend), time.perf_counter()
            for _ in range(BLOCK):
                step += 1
                states = {
                    pid: f'{{"positions": {{"3": {step}}}, "counters": {{"task": {step}}}}}'
                    for pid in rng.sample(players, PER_STEP)
                }
                with conn.begin():
                    SqlScoring(conn, writing=True).save_encoded_states("t", states, at, step)
            wall = (time.perf_counter() - start) / BLOCK * 1000
            server = (_backend_cpu(backend) - cpu) / BLOCK * 1000
            pages: Any = conn.exec_driver_sql(
                "SELECT pg_relation_size('staged_player_states') / 8192"
            ).scalar_one()
            conn.rollback()
            print(f"{block:5d}  {step:12,d}  {wall:11.2f}  {server:17.2f}  {pages:19,d}")
    engine.dispose()


if __name__ == "__main__":
    main()
