"""PostgreSQL: the cost of a scoring step's state upsert (``SqlScoring.save_encoded_states``:
COPY into a staging table, then one ``INSERT … SELECT … ON CONFLICT DO UPDATE``) as one
connection ages: 100 players' states per transaction, 1,000 players, in blocks of 500
transactions; per block, wall time and the server backend's CPU per transaction, and the
staging table's size. Flat figures mean the staging table does not grow with use.

    PYTHONPATH=/tmp/pin-$rev/src .venv/bin/python bench/staging.py [--url URL] [--blocks 6]

It creates a database of its own on the server (dropped at the end).
"""

from __future__ import annotations

import argparse
import os
import random
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import create_engine

from plaudit.store import migrate
from plaudit.store.sql.scoring import SqlScoring

PLAYERS = 1000
PER_STEP = 100
BLOCK = 500


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--url",
        default=os.environ.get(
            "PLAUDIT_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
        ),
        help="a PostgreSQL database to connect to (another is created beside it)",
    )
    parser.add_argument("--blocks", type=int, default=6, help="blocks of 500 transactions")
    args = parser.parse_args()
    name = f"plaudit_bench_{uuid.uuid4().hex[:8]}"
    base = args.url.rsplit("/", 1)[0]
    with psycopg.connect(args.url, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
        try:
            run(f"{base}/{name}".replace("postgresql://", "postgresql+psycopg://", 1), args.blocks)
        finally:
            admin.execute(f"DROP DATABASE {name} WITH (FORCE)")


def _backend_cpu(pid: int) -> float:
    """CPU seconds of a local server backend, from /proc (utime + stime, in ticks)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(url: str, blocks: int) -> None:
    engine = create_engine(url, pool_size=1, max_overflow=0)
    migrate.upgrade(engine)
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
