"""Where one ingest batch spends its time, phase by phase, in-process (no HTTP, one thread).

    .venv/bin/python -m bench.ingest_phases [--batches 150] [--batch-size 1000]
        [--pragma synchronous=NORMAL] [--gc freeze]

It drives the same code the POST /v1/events route calls (parse_events, the ingest service,
report_json, orjson.dumps) on a fresh SQLite file, with the same workload as bench/ingest.py,
and times each phase by wrapping the repository methods. Time inside the SQLite driver
(cursor execute/commit) is measured with SQLAlchemy's cursor events. ``--pragma`` sets a
PRAGMA after the product's own (what would fsync or a bigger page cache change?) and ``--gc``
tries gc.freeze() or no collector; neither touches the product's code.
"""

from __future__ import annotations

import argparse
import gc
import inspect
import shutil
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import event

from bench.ingest import EventMaker, build_batches
from plaudit.api.event_body import parse_events
from plaudit.api.schemas import report_json
from plaudit.bootstrap import build, prepare_embedded
from plaudit.domain.auth import Scope
from plaudit.domain.ids import new_id
from plaudit.services.ingest import IngestService
from plaudit.settings import Settings
from plaudit.store.sql.database import SqlDatabase, SqlUnitOfWork
from plaudit.store.sql.repositories import SqlEvents, SqlPlayers

Spent = dict[str, float]
DRIVER = " [in the SQLite driver]"
COMMIT = "commit (WAL page writes + fsync)"


class Phases:
    """Seconds per phase for the batch being run; wrappers add into ``current``."""

    def __init__(self) -> None:
        self.current: Spent = defaultdict(float)
        self.batches: list[Spent] = []
        self.active: list[str] = []  # the wrapped phases now running, innermost last
        self.gc_runs: list[int] = []  # collections per generation during the run

    def add(self, phase: str, seconds: float) -> None:
        self.current[phase] += seconds

    def next_batch(self) -> None:
        self.batches.append(dict(self.current))
        self.current = defaultdict(float)

    def wrap(self, owner: Any, name: str, phase: str) -> None:
        original: Callable[..., Any] = getattr(owner, name)

        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            self.active.append(phase)
            try:
                return original(*args, **kwargs)
            finally:
                self.active.pop()
                self.add(phase, time.perf_counter() - started)

        is_static = isinstance(inspect.getattr_static(owner, name), staticmethod)
        setattr(owner, name, staticmethod(timed) if is_static else timed)

    def wrap_write(self) -> None:
        """Split SqlDatabase.write into entering (lock, checkout, BEGIN) and leaving."""
        original = SqlDatabase.write

        @contextmanager
        def write(db: SqlDatabase) -> Iterator[SqlUnitOfWork]:
            started = time.perf_counter()
            with original(db) as uow:
                self.add("write: lock + checkout + BEGIN IMMEDIATE", time.perf_counter() - started)
                yield uow
                leaving = time.perf_counter()
            self.add("write: release (pool reset-on-return)", time.perf_counter() - leaving)

        setattr(SqlDatabase, "write", write)  # noqa: B010 (mypy rejects a direct assignment)


def instrument(phases: Phases, db: SqlDatabase, pragmas: Sequence[str]) -> None:
    phases.wrap(SqlPlayers, "resolve", "identity resolve (SELECT … IN)")
    phases.wrap(SqlPlayers, "add_many", "identity create (players INSERT)")
    phases.wrap(SqlPlayers, "add_identities", "identity create (identities INSERT)")
    phases.wrap(SqlEvents, "append", "insert events (INSERT … ON CONFLICT RETURNING)")
    phases.wrap(SqlEvents, "existing_ids", "duplicate lookup (SELECT … IN)")
    phases.wrap(IngestService, "_track_sequences", "sequence runs")
    phases.wrap(SqlUnitOfWork, "commit", COMMIT)
    phases.wrap(type(db.engine.dialect), "do_commit", COMMIT + DRIVER)
    phases.wrap_write()

    @event.listens_for(db.engine, "before_cursor_execute")
    def _before(conn: Any, *_: Any) -> None:
        conn.info["bench_started"] = time.perf_counter()

    @event.listens_for(db.engine, "after_cursor_execute")
    def _after(conn: Any, *_: Any) -> None:
        spent = time.perf_counter() - conn.info["bench_started"]
        phases.add(DRIVER, spent)
        if phases.active:
            phases.add(phases.active[-1] + DRIVER, spent)

    if pragmas:

        @event.listens_for(db.engine, "connect")
        def _pragma(dbapi_conn: Any, _record: Any) -> None:
            for pragma in pragmas:
                dbapi_conn.execute(f"PRAGMA {pragma}")


def run(args: argparse.Namespace, data_dir: Path) -> Phases:
    container = build(Settings(data_dir=data_dir))
    prepare_embedded(container)
    tenant = container.default_tenant
    secret = container.tenancy.create_key(tenant, "bench", frozenset({Scope.EVENTS_WRITE})).secret
    maker = EventMaker("p", "bench-phases", 0, args.actors, args.seed)
    warm = build_batches(EventMaker("w", "bench-warm", 0, args.actors, 2), args.batch_size, 3, 0)
    batches = build_batches(maker, args.batch_size, args.batches, args.duplicates)
    phases = Phases()
    instrument(phases, container.db, args.pragma)
    if args.gc == "freeze":  # what a server could do once after start-up
        gc.collect()
        gc.freeze()
    elif args.gc == "off":
        gc.disable()
    collections = [g["collections"] for g in gc.get_stats()]
    try:
        for index, batch in enumerate([*warm, *batches]):
            started = time.perf_counter()
            container.tenancy.authenticate(secret)
            authed = time.perf_counter()
            items = parse_events(batch.body, container.settings.api.max_batch)
            parsed = time.perf_counter()
            report = container.ingest.ingest(tenant, items)
            ingested = time.perf_counter()
            body = orjson.dumps(report_json(report))
            done = time.perf_counter()
            assert body.startswith(b"{")
            phases.add("authenticate key (SELECT api_keys)", authed - started)
            phases.add("validate (pydantic validate_json + to domain)", parsed - authed)
            phases.add("ingest service, total", ingested - parsed)
            phases.add("response (report_json + orjson.dumps)", done - ingested)
            phases.add("total", done - started)
            phases.next_batch()
            if index < len(warm):
                phases.batches.pop()
    finally:
        gc.enable()
        container.close()
    after = [g["collections"] for g in gc.get_stats()]
    phases.gc_runs = [b - a for a, b in zip(collections, after, strict=True)]
    return phases


INGEST_PARTS = (
    "write: lock + checkout + BEGIN IMMEDIATE",
    "identity resolve (SELECT … IN)",
    "identity create (players INSERT)",
    "identity create (identities INSERT)",
    "insert events (INSERT … ON CONFLICT RETURNING)",
    "duplicate lookup (SELECT … IN)",
    "sequence runs",
    COMMIT,
    "write: release (pool reset-on-return)",
)
ORDER = (
    "authenticate key (SELECT api_keys)",
    "validate (pydantic validate_json + to domain)",
    "ingest service, total",
    *INGEST_PARTS,
    "ingest service Python (rows, ids, results)",
    "response (report_json + orjson.dumps)",
    "total",
)


def summarise(phases: Phases, batch_size: int) -> str:
    rows = phases.batches
    for spent in rows:
        spent["ingest service Python (rows, ids, results)"] = spent["ingest service, total"] - sum(
            spent.get(p, 0.0) for p in INGEST_PARTS
        )
    total = statistics.fmean(r["total"] for r in rows)
    lines = [
        f"{len(rows)} batches of {batch_size}: mean ms per batch, share of the total, "
        "median, and the part spent inside the SQLite driver (GIL released)",
        "",
    ]
    for phase in ORDER:
        values = [r.get(phase, 0.0) for r in rows]
        mean = statistics.fmean(values)
        driver = statistics.fmean(r.get(phase + DRIVER, 0.0) for r in rows)
        indent = "    " if phase in INGEST_PARTS or phase.startswith("ingest service P") else ""
        in_driver = f"  driver {1000 * driver:6.2f} ms" if driver else ""
        if phase == "total":  # statements (cursor events) plus commits (wrapped do_commit)
            driver = statistics.fmean(r.get(DRIVER, 0) + r.get(COMMIT + DRIVER, 0) for r in rows)
            in_driver = f"  driver {1000 * driver:6.2f} ms"
        lines.append(
            f"{indent}{phase:<{50 - len(indent)}} {1000 * mean:7.2f} ms {100 * mean / total:5.1f}%"
            f"  (median {1000 * statistics.median(values):6.2f}){in_driver}"
        )
    lines.append("")
    lines.append(f"one thread, no HTTP: {batch_size / total:,.0f} events/s")
    lines.append(f"garbage collections (gen 0, 1, 2) during the run: {phases.gc_runs}")
    started = time.perf_counter()
    for _ in range(batch_size):
        new_id("evt")
    lines.append(f"new_id() x {batch_size}: {1000 * (time.perf_counter() - started):.2f} ms")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=150)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--duplicates", type=float, default=0.05)
    parser.add_argument("--actors", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--pragma",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a PRAGMA set after the product's own, e.g. synchronous=NORMAL (repeatable)",
    )
    parser.add_argument("--data-parent", type=Path, default=None)
    parser.add_argument(
        "--gc", choices=("default", "freeze", "off"), default="default", help="GC experiment"
    )
    args = parser.parse_args(argv)
    data_dir = Path(tempfile.mkdtemp(prefix="plaudit-phases-", dir=args.data_parent))
    try:
        phases = run(args, data_dir)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    extra = ", ".join(args.pragma) or "none (as the product sets them)"
    print(f"extra PRAGMAs: {extra}; gc {args.gc}")
    print(summarise(phases, args.batch_size))
    return 0


if __name__ == "__main__":
    sys.exit(main())
