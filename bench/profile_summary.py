"""Sum a py-spy raw profile (``--format raw``) of `plaudit serve` into ingest phases.

    .venv/bin/python bench/profile_summary.py bench/results/ingest-b1000.txt [--all]

Each sample goes to the phase of its deepest frame that names one (so a SQLAlchemy frame
under ``SqlEvents.append`` counts as "insert events"). Idle threads (the event loop in
epoll, anyio workers waiting for work) are left out unless ``--all``; time spent waiting
for the write lock is kept, as its own line, since it is what a request waits for.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

IDLE = "(idle)"

# (phase, function as py-spy names it, file it lives in); the deepest match wins.
PHASES: tuple[tuple[str, str, str], ...] = (
    ("validate (pydantic) + to domain", "parse_events", "plaudit/api/event_body.py"),
    ("authenticate key", "TenancyService.authenticate", "plaudit/services/tenancy.py"),
    ("identity resolve (SELECT)", "SqlPlayers.resolve", "plaudit/store/sql/repositories.py"),
    ("identity create (INSERTs)", "SqlPlayers.add_many", "plaudit/store/sql/repositories.py"),
    (
        "identity create (INSERTs)",
        "SqlPlayers.add_identities",
        "plaudit/store/sql/repositories.py",
    ),
    ("insert events", "SqlEvents.append", "plaudit/store/sql/repositories.py"),
    ("duplicate lookup (SELECT)", "SqlEvents.existing_ids", "plaudit/store/sql/repositories.py"),
    ("sequence runs", "IngestService._track_sequences", "plaudit/services/ingest.py"),
    ("commit (WAL page writes + fsync)", "SqlUnitOfWork.commit", "plaudit/store/sql/database.py"),
    ("new ids (new_id)", "new_id", "plaudit/domain/ids.py"),
    ("ingest service Python", "IngestService.ingest", "plaudit/services/ingest.py"),
    ("response building (report_json)", "report_json", "plaudit/api/schemas.py"),
    ("endpoint (orjson.dumps, Response)", "ingest_events", "plaudit/api/routes/events.py"),
    ("idempotency route wrapper", "IdempotentRoute", "plaudit/api/idempotency.py"),
    ("body guard middleware", "BodyGuard", "plaudit/api/middleware.py"),
)
# Background work: everything under these frames counts as theirs, commits and waits included.
OWNERS: tuple[tuple[str, str, str], ...] = (
    ("scoring worker (in-process)", "ScoringService", "plaudit/services/scoring.py"),
    ("idempotency janitor", "IdempotencyJanitor", "plaudit/workers/maintenance.py"),
)
# SqlDatabase.write as the leaf frame: blocked on its threading.Lock (or in BEGIN/connect).
LOCK_WAIT = "write lock wait / BEGIN IMMEDIATE / checkout"
GROUP_WAIT = "group commit: waiting for the leader's commit"
IDLE_LEAVES = {"Condition.wait", "EpollSelector.select", "Queue.get"}
HTTP = "HTTP + ASGI (uvicorn, starlette, fastapi)"
THREAD_HOP = "thread hand-off (anyio to_thread)"
WAIT_LEAVES = {"SqlDatabase.write": LOCK_WAIT, "IngestService._write_grouped": GROUP_WAIT}
SQLITE_LEAVES = ("do_execute", "do_executemany", "do_commit", "do_rollback", "fetch")


def frame_name(frame: str) -> tuple[str, str]:
    """('Class.func', 'pkg/file.py') from 'Class.func (pkg/file.py:12)'."""
    name, _, where = frame.rpartition(" (")
    return name, where.rstrip(")").rsplit(":", 1)[0]


def _is(frame: str, func: str, path: str) -> bool:
    """Whether the frame is ``func`` (or a function nested in it, or a method of it) in path."""
    name, file = frame_name(frame)
    return path in file and (name == func or name.startswith(func + "."))


def leaf_layer(name: str, file: str) -> str:
    """Where the sampled (leaf) frame runs."""
    if any(s in name for s in SQLITE_LEAVES) and "sqlalchemy" in file:
        return "in SQLite (C, GIL released)"
    if "sqlalchemy" in file:
        return "SQLAlchemy Python"
    if file.startswith("plaudit/"):
        return "plaudit Python"
    if "pydantic" in file:
        return "pydantic (Rust)"
    return "other (stdlib, uvicorn, starlette...)"


def classify(frames: Sequence[str]) -> tuple[str, str]:
    """(phase, where the leaf runs: SQLite C code, SQLAlchemy, plaudit or other Python)."""
    leaf_name, leaf_file = frame_name(frames[-1])
    if leaf_name in IDLE_LEAVES:
        return IDLE, ""
    for owner, func, path in OWNERS:
        if any(_is(frame, func, path) for frame in frames):
            return owner, leaf_layer(leaf_name, leaf_file)
    if leaf_name in WAIT_LEAVES:  # blocked on a threading.Lock in that function
        return WAIT_LEAVES[leaf_name], "waiting"
    layer = leaf_layer(leaf_name, leaf_file)
    for frame in reversed(frames):
        for phase, func, path in PHASES:
            if _is(frame, func, path):
                return phase, layer
    if any("WorkerThread.run" in f for f in frames):
        return THREAD_HOP, layer
    return HTTP, layer


def read_raw(lines: Iterable[str]) -> Counter[tuple[str, str]]:
    counts: Counter[tuple[str, str]] = Counter()
    for line in lines:
        stack, _, n = line.rstrip("\n").rpartition(" ")
        if stack and n.isdigit():
            counts[classify(stack.split(";"))] += int(n)
    return counts


def render(counts: Counter[tuple[str, str]], include_idle: bool) -> str:
    if not include_idle:
        counts = Counter({k: v for k, v in counts.items() if k[0] != IDLE})
    total = sum(counts.values()) or 1
    by_phase: Counter[str] = Counter()
    by_layer: Counter[str] = Counter()
    for (phase, layer), n in counts.items():
        by_phase[phase] += n
        if layer:
            by_layer[layer] += n
    lines = [f"{total} samples" + ("" if include_idle else " (idle threads left out)"), ""]
    lines += [f"{100 * n / total:6.1f}%  {phase}" for phase, n in by_phase.most_common()]
    lines += ["", "where the leaf frame runs:"]
    lines += [f"{100 * n / total:6.1f}%  {layer}" for layer, n in by_layer.most_common()]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profile", type=Path, help="py-spy record --format raw output")
    parser.add_argument("--all", action="store_true", help="count idle threads too")
    args = parser.parse_args(argv)
    with args.profile.open() as f:
        print(render(read_raw(f), args.all))
    return 0


if __name__ == "__main__":
    sys.exit(main())
