"""Leaderboard benchmark: one all-time board of N players (default 1,000,000), the memory and
Redis projections side by side in one run, against references on the same data.

    .venv/bin/python -m bench.leaderboards [--players 1000000] [--json PATH]
    .venv/bin/python -m bench.leaderboards --players 20000 --quick     # smoke test, < 1 min

1. In-process, per adapter: top-10, around-me (k=5) of a random player, and ``apply()`` of
   batches of 1,000 changes (the projector's throughput); then one request's work through
   the service without HTTP (authentication, window, entries, response), phase by phase.
2. References on the same data: the naive SQL rank (a window function over the whole board)
   and a COUNT(*) of better rows on SQLite; raw Redis (``redis-benchmark``, and redis-py
   pipelined ZADD), the limit the Redis projection is compared with.
3. Through HTTP, per adapter: a real ``plaudit serve`` on 127.0.0.1 whose start-up rebuild
   loads the board from SQLite, loaded by ``wrk`` with 1 and 16 connections. Rate limits
   are on (raised so that none refuses): every request pays for its checks, in Redis with
   the Redis projection, as in a deployment.

Machines here are noisy: compare the ratios within one run, and mind the "other" CPU column
(everything else on the machine). Ranks are checked against a sort of the generated data.
Only processes started here are stopped (by PID), and only Redis keys under this run's
prefix are deleted.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import hashlib
import importlib.util
import itertools
import json
import os
import random
import re
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anyio.to_thread
import httpx
import redis

from bench.ingest import (
    BenchError,
    cpu_seconds,
    machine,
    machine_busy_seconds,
    percentile,
    pinned_code,
    running_server,
    save_json,
    stop_on_sigterm,
    warn_if_busy,
)
from plaudit.api.routes.leaderboards import AroundOut, EntryOut, StandingsOut, WindowOut
from plaudit.bootstrap import build, prepare_embedded
from plaudit.domain.auth import Scope
from plaudit.leaderboards.memory import MemoryProjection
from plaudit.leaderboards.ports import SCALE, BoardKey, Change, Projection, Standing
from plaudit.leaderboards.redis import RedisProjection
from plaudit.settings import Settings

TENANT, BOARD, WINDOW = "default", "xp-all-time", "all"
KEY = BoardKey(TENANT, BOARD, WINDOW)
RULESET = f"""\
currencies: [xp]
leaderboards:
  - id: {BOARD}
    name: All-time xp
    metric: {{currency: xp}}
"""
BATCH = 1000  # changes per apply(), as the projector sends them
AROUND = 5
TOP = 10
# Targets to compare against.
TARGET_REQ_PER_S = 3000  # per API process
TARGET_P99_MS = {1: 2.0, 16: 30.0}  # by concurrent clients
TARGET_APPLY_SHARE = 0.70  # projector updates/s over raw pipelined Redis ZADD
NOISY_PCT = 10  # other processes' CPU (% of a core) above which a case is flagged
EPOCH_2026_US = 1_767_225_600_000_000

WRK_SCRIPT = """\
-- GET one kind of path (random players for around-me); prints a JSON summary at the end.
local counter = 0
function setup(thread)
  counter = counter + 1
  thread:set("tid", counter)
end
function init(args)
  kind, players, board = args[1], tonumber(args[2]), args[3]
  math.randomseed(tonumber(args[4]) * 1000 + (tid or 0))
  wrk.headers["Authorization"] = "Bearer " .. os.getenv("BENCH_API_KEY")
end
function request()
  local path = "/healthz"
  if kind == "around" then
    path = string.format("/v1/leaderboards/%s/standings/plr_%032x?around=5",
                         board, math.random(players) - 1)
  elseif kind == "top" then
    path = "/v1/leaderboards/" .. board .. "/standings?limit=10"
  end
  return wrk.format("GET", path)
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('BENCH-RESULT {"requests": %d, "duration_us": %d, "bytes": %d, ' ..
    '"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d, ' ..
    '"p50_us": %d, "p99_us": %d, "max_us": %d}\\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, latency:percentile(50), latency:percentile(99), latency.max))
end
"""


@dataclass(slots=True)
class Measured:
    section: str  # in-process | service | reference | http
    adapter: str
    case: str
    clients: int
    ops: int
    seconds: float
    per_s: float  # ops per second (for one-off cases: the seconds, unit "s")
    unit: str
    p50_ms: float | None
    p99_ms: float | None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Workload:
    standings: list[Standing]
    ranks: dict[str, int]  # the true rank of the players the run checks
    picks: list[str]  # random players for around-me, drawn before the clock starts


# --- workload -------------------------------------------------------------------------------


def subject_of(i: int) -> str:
    return f"plr_{i:032x}"  # shaped like a player id (36 characters); wrk's script makes it too


def make_workload(players: int, seed: int) -> Workload:
    """Whole-xp scores, exponential (mean 2,000: many ties, broken by when they were reached)."""
    rng = random.Random(seed)
    year_us = 300 * 86_400_000_000
    standings = [
        Standing(
            subject_of(i),
            int(rng.expovariate(1 / 2000)) * SCALE,
            EPOCH_2026_US + rng.randrange(year_us),
        )
        for i in range(players)
    ]
    picks = [subject_of(rng.randrange(players)) for _ in range(20_000)]
    checked = set(picks[:50]) | {subject_of(0), subject_of(players - 1)}
    order = sorted(standings, key=lambda s: (-s.units, s.reached_us, s.subject))
    ranks = {s.subject: r for r, s in enumerate(order, 1) if s.subject in checked}
    return Workload(standings, ranks, picks)


def prepare_data_dir(root: Path, standings: Sequence[Standing]) -> str:
    """Migrate, publish the board's rule set, make a read key, and write the scores and the
    players straight into SQLite (a million through the services would take far longer)."""
    container = build(Settings(data_dir=root, redis_url=None, _env_file=None))
    try:
        prepare_embedded(container)
        draft = container.rulesets.create(TENANT, "bench-leaderboards", RULESET)
        container.rulesets.publish(TENANT, draft.record.id, "bench")
        secret = container.tenancy.create_key(TENANT, "bench", frozenset({Scope.READ})).secret
    finally:
        container.close()
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    with closing(sqlite3.connect(root / "plaudit.db")) as conn, conn:
        conn.executemany(
            "INSERT INTO players (id, tenant_id, attributes, created_at, updated_at) "
            "VALUES (?, ?, '{}', ?, ?)",
            ((s.subject, TENANT, now, now) for s in standings),
        )
        conn.executemany(
            "INSERT INTO board_scores (tenant_id, board_id, window, subject, units, reached_us, "
            "entries, seq) VALUES (?, ?, ?, ?, ?, ?, 1, 1)",
            ((TENANT, BOARD, WINDOW, s.subject, s.units, s.reached_us) for s in standings),
        )
        conn.execute(
            "INSERT INTO cursors (name, position) VALUES ('board-seq', 1) "
            "ON CONFLICT (name) DO UPDATE SET position = 1"
        )
    return secret


# --- measuring ------------------------------------------------------------------------------


def timed_calls(call: Callable[[int], object], seconds: float) -> tuple[list[int], float]:
    """Call ``call(i)`` back to back for ``seconds``: (ns per call, wall seconds)."""
    latencies: list[int] = []
    started = time.perf_counter_ns()
    deadline = started + int(seconds * 1e9)
    i, now = 0, started
    while now < deadline:
        before = time.perf_counter_ns()
        call(i)
        now = time.perf_counter_ns()
        latencies.append(now - before)
        i += 1
    return latencies, (now - started) / 1e9


def measured(
    section: str,
    adapter: str,
    case: str,
    ops: int,
    seconds: float,
    latencies_ns: list[int],
    unit: str = "ops/s",
    extra: dict[str, Any] | None = None,
) -> Measured:
    lat = sorted(latencies_ns)
    return Measured(
        section=section,
        adapter=adapter,
        case=case,
        clients=1,
        ops=ops,
        seconds=round(seconds, 3),
        per_s=round(ops / seconds, 1),
        unit=unit,
        p50_ms=round(percentile(lat, 50) / 1e6, 4),
        p99_ms=round(percentile(lat, 99) / 1e6, 4),
        extra=extra or {},
    )


def once(section: str, adapter: str, case: str, seconds: float, **extra: Any) -> Measured:
    """A one-off (a load, a start-up): its duration in seconds."""
    return Measured(
        section, adapter, case, 1, 1, round(seconds, 3), round(seconds, 2), "s", None, None, extra
    )


def redis_cpu(client: redis.Redis | None) -> float:
    if client is None:
        return 0.0
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


class CpuWatch:
    """CPU seconds used while the block ran, by this process, the children it waited for (wrk,
    redis-benchmark), Redis, a server, and everything else on the machine (the noise)."""

    def __init__(self, redis_client: redis.Redis | None = None, pid: int | None = None) -> None:
        self.redis_client = redis_client
        self.pid = pid
        self.used: dict[str, float] = {}
        self.wall = 0.0
        self._start: dict[str, float] = {}

    def _now(self) -> dict[str, float]:
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        return {
            "wall": time.perf_counter(),
            "machine": machine_busy_seconds() or 0.0,
            "bench": time.process_time(),
            "child": kids.ru_utime + kids.ru_stime,
            "redis": redis_cpu(self.redis_client),
            "server": (cpu_seconds(self.pid) or 0.0) if self.pid else 0.0,
        }

    def __enter__(self) -> CpuWatch:
        self._start = self._now()
        return self

    def __exit__(self, *_: object) -> None:
        end = self._now()
        spent = {k: end[k] - self._start[k] for k in end}
        self.wall = spent.pop("wall")
        machine_busy = spent.pop("machine")
        self.used = {k: v for k, v in spent.items() if v > 0 or k == "bench"}
        self.used["other"] = max(0.0, machine_busy - sum(spent.values()))

    def shares(self, child: str = "child") -> dict[str, int]:
        """Percent of one core over the block's wall time, per user."""
        return {
            f"{child if k == 'child' else k}_cpu_pct": round(100 * v / self.wall)
            for k, v in self.used.items()
        }


def check_ranks(where: str, found: dict[str, int | None], truth: dict[str, int]) -> None:
    wrong = {s: (r, truth[s]) for s, r in found.items() if r != truth[s]}
    if wrong:
        raise BenchError(f"{where}: wrong ranks (found, expected): {dict(list(wrong.items())[:5])}")


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def redis_memory(client: redis.Redis) -> int:
    return int(client.info("memory")["used_memory"])


def redis_usec(client: redis.Redis | None, *commands: str) -> float:
    """Microseconds Redis has spent in ``commands`` (scripts' inner calls count in theirs too)."""
    if client is None:
        return 0.0
    stats = client.info("commandstats")
    return sum(float(stats.get(f"cmdstat_{command}", {}).get("usec", 0)) for command in commands)


# --- in-process -----------------------------------------------------------------------------


def in_process(
    adapter: str,
    projection: Projection,
    work: Workload,
    seconds: float,
    redis_client: redis.Redis | None,
) -> list[Measured]:
    players = len(work.standings)
    # Redis counts its memory; this process's RSS would not tell (freed memory is reused), so
    # the memory projection's size shows in the two servers' RSS instead.
    memory_before = redis_memory(redis_client) if redis_client else 0
    started = time.perf_counter()
    projection.replace(KEY, work.standings)
    load_s = time.perf_counter() - started
    held = {}
    if redis_client is not None:
        held["redis_mb"] = round((redis_memory(redis_client) - memory_before) / 2**20)
    print(f"  {adapter}: replace() of {players:,} in {load_s:.1f} s {held or ''}", flush=True)
    if projection.size(KEY) != players:
        raise BenchError(f"{adapter}: {projection.size(KEY)} held after replace, not {players}")
    found = {s: getattr(projection.standing(KEY, s), "rank", None) for s in work.ranks}
    check_ranks(f"{adapter} projection", found, work.ranks)
    gc.collect()
    gc.freeze()  # as the server does after its start-up rebuild
    out = [once("in-process", adapter, f"replace() of {players:,}", load_s, **held)]
    picks = work.picks
    cases: list[tuple[str, Callable[[int], object]]] = [
        ("top-10", lambda _: projection.top(KEY, 0, TOP)),
        (f"around-me k={AROUND}", lambda i: projection.around(KEY, picks[i % len(picks)], AROUND)),
    ]
    for case, call in cases:
        with CpuWatch(redis_client) as cpu:
            lat, elapsed = timed_calls(call, seconds)
        out.append(
            measured("in-process", adapter, case, len(lat), elapsed, lat, extra=cpu.shares())
        )
    out.append(apply_batches(adapter, projection, players, seconds, redis_client))
    return out


# Seeds the changes of each call: another call repeating the same ones would find them applied
# already (a no-op, cheaper than an update).
_CALLS = itertools.count(1)


def apply_batches(
    adapter: str,
    projection: Projection,
    players: int,
    seconds: float,
    redis_client: redis.Redis | None,
) -> Measured:
    """Fresh changes each batch (re-applying a standing is a no-op), also across calls; only
    apply() is timed."""
    call = next(_CALLS)
    rng = random.Random(7 * call)
    reached = EPOCH_2026_US + 400 * 86_400_000_000 + call * 10**12
    spent: list[int] = []
    usec = redis_usec(redis_client, "evalsha", "eval")
    with CpuWatch(redis_client) as cpu:
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            batch = []
            for _ in range(BATCH):
                reached += 1
                units = rng.randrange(20_000) * SCALE
                batch.append(Change(KEY, subject_of(rng.randrange(players)), units, reached))
            before = time.perf_counter_ns()
            projection.apply(batch, len(spent) + 2)
            spent.append(time.perf_counter_ns() - before)
    busy = sum(spent) / 1e9
    extra: dict[str, Any] = {"other_cpu_pct": cpu.shares()["other_cpu_pct"]}
    if redis_client is not None:  # how much of apply()'s time Redis itself was busy
        extra["redis_busy_pct_of_apply"] = round(100 * cpu.used.get("redis", 0.0) / busy)
        usec = redis_usec(redis_client, "evalsha", "eval") - usec
        extra["redis_us_per_update"] = round(usec / (len(spent) * BATCH), 2)
    case = f"apply() x{BATCH:,} (p: ms a batch)"
    return measured(
        "in-process", adapter, case, len(spent) * BATCH, busy, spent, "updates/s", extra
    )


def service_phases(data_dir: Path, secret: str, work: Workload, seconds: float) -> list[Measured]:
    """One request's work through the services, in one thread, without HTTP (memory projection):
    what a request costs over HTTP beyond the sum of these is the API stack's."""
    container = build(Settings(data_dir=data_dir, redis_url=None, _env_file=None))
    try:
        started = time.perf_counter()
        container.leaderboards.start()  # the server's start-up rebuild, from SQL
        out = [
            once("service", "memory", "start(): rebuild from SQL", time.perf_counter() - started)
        ]
        service = container.leaderboards
        view = service.window(TENANT, BOARD, None)
        top, total = service.standings(TENANT, view, 0, TOP)
        picks = work.picks
        mine = service.around(TENANT, view, picks[0], AROUND)

        def top_json(_: int) -> bytes:
            items = [EntryOut.of(e) for e in top]
            body = StandingsOut(
                board=BOARD,
                window=WindowOut.of(view),
                participants=total,
                items=items,
                next_cursor=None,
            )
            return body.model_dump_json().encode()

        def around_json(_: int) -> bytes:
            entry = EntryOut.of(mine[len(mine) // 2])
            neighbours = [EntryOut.of(e) for e in mine]
            body = AroundOut(
                board=BOARD,
                window=WindowOut.of(view),
                subject=picks[0],
                entry=entry,
                neighbours=neighbours,
            )
            return body.model_dump_json().encode()

        def etag(_: int) -> str:
            version = service.version(TENANT, view)
            path = f"/v1/leaderboards/{BOARD}/standings?limit=10|{version}"
            return hashlib.sha256(path.encode()).hexdigest()[:20]

        phases: list[tuple[str, Callable[[int], object]]] = [
            ("authenticate the key (1 SELECT)", lambda _: container.tenancy.authenticate(secret)),
            ("resolve the window", lambda _: service.window(TENANT, BOARD, None)),
            ("version + ETag", etag),
            ("top-10: entries", lambda _: service.standings(TENANT, view, 0, TOP)),
            ("top-10: response model + JSON", top_json),
            (
                "around-me: find the player (1 SELECT)",
                lambda i: service.subject_of(TENANT, view, picks[i % len(picks)]),
            ),
            (
                f"around-me: entries k={AROUND}",
                lambda i: service.around(TENANT, view, picks[i % len(picks)], AROUND),
            ),
            ("around-me: response model + JSON", around_json),
        ]
        cached = getattr(container.tenancy, "cached_principal", None)  # from 6219d98 on
        if cached is not None:
            phases.insert(1, ("the key from the cache (no I/O)", lambda _: cached(secret)))
        for case, call in phases:
            lat, elapsed = timed_calls(call, seconds)
            out.append(measured("service", "memory", case, len(lat), elapsed, lat))
        lat, elapsed = asyncio.run(thread_hops(seconds))
        out.append(
            measured(
                "service", "-", "thread hop (await to_thread.run_sync)", len(lat), elapsed, lat
            )
        )
        return out
    finally:
        container.close()


async def thread_hops(seconds: float) -> tuple[list[int], float]:
    """A no-op sent to a worker thread and awaited, as each route does twice (key, handler)."""
    latencies: list[int] = []
    started = time.perf_counter_ns()
    deadline = started + int(seconds * 1e9)
    now = started
    while now < deadline:
        before = time.perf_counter_ns()
        await anyio.to_thread.run_sync(int)
        now = time.perf_counter_ns()
        latencies.append(now - before)
    return latencies, (now - started) / 1e9


# --- references -----------------------------------------------------------------------------


@contextmanager
def deadline_for(conn: sqlite3.Connection, seconds: float) -> Iterator[None]:
    """Interrupt a runaway statement: every query here is bounded in time."""
    ends = time.monotonic() + seconds
    conn.set_progress_handler(lambda: int(time.monotonic() > ends), 10_000)
    try:
        yield
    finally:
        conn.set_progress_handler(None, 0)


NAIVE_RANK = (
    "SELECT rnk FROM (SELECT subject, rank() OVER (ORDER BY units DESC, reached_us, subject) "
    "AS rnk FROM board_scores WHERE tenant_id = ? AND board_id = ? AND window = ? "
    "AND entries > 0) WHERE subject = ?"
)
# As SqlBoards.rank_of counts (closed windows are answered from SQL).
BETTER_ROWS = (
    "SELECT count(*) FROM board_scores WHERE tenant_id = ? AND board_id = ? AND window = ? "
    "{listed}AND units >= ? AND (units > ? OR (units = ? AND reached_us < ?) "
    "OR (units = ? AND reached_us = ? AND subject < ?))"
)
SQL_TOP = (
    "SELECT subject, units, reached_us FROM board_scores WHERE tenant_id = ? AND board_id = ? "
    "AND window = ? AND entries > 0 ORDER BY units DESC, reached_us, subject LIMIT 10"
)


def sql_references(db: Path, work: Workload, runs: int, seconds: float) -> list[Measured]:
    """Raw sqlite3 with its default settings, on the data dir's file."""
    by_subject = {s.subject: s for s in work.standings}
    checked = list(work.ranks)
    board = (TENANT, BOARD, WINDOW)
    out = []
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        lat, found = [], {}
        for subject in checked[:runs]:
            before = time.perf_counter_ns()
            with deadline_for(conn, 120):
                found[subject] = conn.execute(NAIVE_RANK, (*board, subject)).fetchone()[0]
            lat.append(time.perf_counter_ns() - before)
        check_ranks("SQL rank()", found, work.ranks)
        out.append(
            measured("reference", "sqlite", "rank() OVER (naive)", len(lat), sum(lat) / 1e9, lat)
        )
        for name, listed in (("entries > 0", "AND entries > 0 "), ("index only", "")):
            query = BETTER_ROWS.format(listed=listed)
            lat, found = [], {}
            for subject in checked[: runs * 3]:
                s = by_subject[subject]
                args = (
                    *board,
                    s.units,
                    s.units,
                    s.units,
                    s.reached_us,
                    s.units,
                    s.reached_us,
                    subject,
                )
                before = time.perf_counter_ns()
                with deadline_for(conn, 60):
                    found[subject] = conn.execute(query, args).fetchone()[0] + 1
                lat.append(time.perf_counter_ns() - before)
            check_ranks(f"SQL count ({name})", found, work.ranks)
            plan = " / ".join(r[3] for r in conn.execute(f"EXPLAIN QUERY PLAN {query}", args))
            case = f"COUNT(*) better rows, {name}"
            extra = {"plan": plan}
            out.append(
                measured("reference", "sqlite", case, len(lat), sum(lat) / 1e9, lat, extra=extra)
            )
        lat, elapsed = timed_calls(lambda _: conn.execute(SQL_TOP, board).fetchall(), seconds)
        out.append(measured("reference", "sqlite", "top-10 by index", len(lat), elapsed, lat))
    return out


def fill(client: redis.Redis, key: str, members: Sequence[str]) -> None:
    for start in range(0, len(members), 10_000):
        chunk = members[start : start + 10_000]
        client.zadd(key, {m: -((start + i) * 7919 % 20_000) for i, m in enumerate(chunk)})


def redis_py_pipelined(
    client: redis.Redis, key: str, players: int, seconds: float, cases: int = 2
) -> list[Measured]:
    """ZADD of existing members, 1,000 per round trip: one command each (the reference the
    projector is held to), and one ZADD of 1,000 members."""
    if client.zcard(key) != players:
        fill(client, key, [subject_of(i) for i in range(players)])
    rng = random.Random(11 * next(_CALLS))
    out = []
    for case in ("pipelined ZADD x1,000", "ZADD of 1,000 members")[:cases]:
        spent: list[int] = []
        usec = redis_usec(client, "zadd")
        with CpuWatch(client) as cpu:
            deadline = time.perf_counter() + seconds
            while time.perf_counter() < deadline:
                batch = [
                    (subject_of(rng.randrange(players)), -rng.randrange(20_000))
                    for _ in range(BATCH)
                ]
                before = time.perf_counter_ns()
                pipe = client.pipeline(transaction=False)
                if case.startswith("pipelined"):
                    for member, score in batch:
                        pipe.zadd(key, {member: score})
                else:
                    pipe.zadd(key, dict(batch))
                pipe.execute()
                spent.append(time.perf_counter_ns() - before)
        busy = sum(spent) / 1e9
        extra = {
            "other_cpu_pct": cpu.shares()["other_cpu_pct"],
            "redis_busy_pct_of_apply": round(100 * cpu.used.get("redis", 0.0) / busy),
            "redis_us_per_update": round(
                (redis_usec(client, "zadd") - usec) / (len(spent) * BATCH), 2
            ),
        }
        name = f"{case} (p: ms a batch)"
        out.append(
            measured(
                "reference", "redis-py", name, len(spent) * BATCH, busy, spent, "updates/s", extra
            )
        )
    return out


def redis_benchmark(
    client: redis.Redis, url: str, key: str, players: int, quick: bool
) -> list[Measured]:
    """The limit: Redis' own C client, on members ``member:%012d`` of a set of ``players``."""
    exe = shutil.which("redis-benchmark")
    if exe is None:
        print("  redis-benchmark not found (it comes with redis-server): skipped")
        return []
    fill(client, key, [f"member:{i:012d}" for i in range(players)])
    parts = urlsplit(url)
    base = [exe, "-h", parts.hostname or "127.0.0.1", "-p", str(parts.port or 6379)]
    base += ["--dbnum", (parts.path.strip("/") or "0"), "--csv", "-r", str(players)]
    zadd = ["zadd", key, "__rand_int__", "member:__rand_int__"]
    rank = ["zrevrank", key, "member:__rand_int__"]
    top = ["zrevrange", key, "0", "9", "withscores"]
    cases = [
        ("ZADD -P 1000 (p: ms a batch)", 1, ["-P", "1000"], 2_000_000, "updates/s", zadd),
        ("ZREVRANK", 1, [], 100_000, "ops/s", rank),
        ("ZREVRANK", 16, [], 300_000, "ops/s", rank),
        ("ZREVRANGE 0 9 WITHSCORES", 1, [], 100_000, "ops/s", top),
        ("ZREVRANGE 0 9 WITHSCORES", 16, [], 300_000, "ops/s", top),
    ]
    out = []
    for case, clients, pipeline, count, unit, command in cases:
        n = count // (10 if quick else 1)
        argv = [*base, "-c", str(clients), "-n", str(n), *pipeline, *command]
        with CpuWatch(client) as cpu:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=180, check=False)
        rows = [r for r in done.stdout.splitlines() if r.startswith('"') and '"rps"' not in r]
        if done.returncode != 0 or not rows:
            raise BenchError(f"redis-benchmark failed: {done.stderr.strip() or done.stdout[-500:]}")
        cells = [c.strip('"') for c in rows[-1].split('","')]
        rps, p50, p99 = float(cells[1]), float(cells[4]), float(cells[6])
        took, shares = round(n / rps, 3), cpu.shares(child="redis-benchmark")
        row = Measured("reference", "redis-benchmark", case, clients, n, took, rps, unit, p50, p99)
        row.extra.update(shares)
        out.append(row)
    return out


# --- HTTP -----------------------------------------------------------------------------------


# Rate limits stay on, as in a deployment with the defaults (each request checks its key's
# and its address's buckets: in Redis with the Redis projection), raised so that none refuses.
UNREFUSED = "1000000000/min"


def redis_settings(redis_url: str, prefix: str | None) -> dict[str, str]:
    """The memory projection, or with ``prefix`` the Redis one under that prefix; the rate
    limits on, and never refusing."""
    limits = {
        "PLAUDIT_RATE_LIMITS__PER_KEY": UNREFUSED,
        "PLAUDIT_RATE_LIMITS__PER_SOURCE": UNREFUSED,
    }
    if prefix is None:
        return limits
    return {
        **limits,
        "PLAUDIT_REDIS_URL": redis_url,
        "PLAUDIT_LEADERBOARDS__REDIS_PREFIX": prefix,
    }


def check_server(url: str, key: str, work: Workload) -> None:
    """The board is there, whole, in the right order, before any load."""
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
        top = client.get(f"/v1/leaderboards/{BOARD}/standings", params={"limit": TOP})
        if top.status_code != 200:
            raise BenchError(f"top-10: {top.status_code} {top.text[:300]}")
        body = top.json()
        if body["participants"] != len(work.standings) or len(body["items"]) != TOP:
            raise BenchError(f"top-10: {body['participants']} participants, {body['items']}")
        found: dict[str, int | None] = {}
        for subject in list(work.ranks)[:10]:
            mine = client.get(f"/v1/leaderboards/{BOARD}/standings/{subject}", params={"around": 5})
            if mine.status_code != 200:
                raise BenchError(f"around-me: {mine.status_code} {mine.text[:300]}")
            entry = mine.json()["entry"]
            found[subject] = entry["rank"] if entry else None
        check_ranks("HTTP around-me", found, work.ranks)


def wrk_run(
    url: str, key: str, script: Path, kind: str, clients: int, seconds: int, players: int
) -> dict[str, Any]:
    argv = ["wrk", "-t", "1", "-c", str(clients), "-d", f"{seconds}s", "--timeout", "10s"]
    argv += ["-s", str(script), url, "--", kind, str(players), BOARD, str(clients)]
    env = {**os.environ, "BENCH_API_KEY": key}  # not on the command line
    done = subprocess.run(
        argv, env=env, capture_output=True, text=True, timeout=seconds + 60, check=False
    )
    found = re.search(r"^BENCH-RESULT (\{.*\})$", done.stdout, re.MULTILINE)
    if done.returncode != 0 or found is None:
        raise BenchError(f"wrk failed ({done.returncode}): {done.stderr.strip() or done.stdout}")
    result: dict[str, Any] = json.loads(found.group(1))
    return result


HTTP_CASES = [
    ("healthz", 1),
    ("healthz", 16),
    ("top", 1),
    ("top", 16),
    ("around", 1),
    ("around", 16),
]
HTTP_NAMES = {"healthz": "GET /healthz", "top": "top-10", "around": f"around-me k={AROUND}"}


def over_http(
    adapter: str,
    data_dir: Path,
    key: str,
    work: Workload,
    args: argparse.Namespace,
    redis_client: redis.Redis,
    prefix: str | None,
) -> list[Measured]:
    script = data_dir / "bench.lua"
    script.write_text(WRK_SCRIPT)
    settings = redis_settings(args.redis_url, prefix)
    timeout = 60 + len(work.standings) / 4000  # the start-up rebuild reads every score
    started = time.perf_counter()
    out = []
    with running_server(data_dir, settings, timeout) as server:
        ready_s = time.perf_counter() - started
        rss_mb = round(rss_bytes(server.pid) / 2**20)
        print(f"  {adapter}: server pid {server.pid} ready in {ready_s:.1f} s, {rss_mb:,} MB RSS")
        check_server(server.url, key, work)
        out.append(
            once("http", adapter, "start-up to ready (rebuild)", ready_s, server_rss_mb=rss_mb)
        )
        for kind, clients in HTTP_CASES:
            wrk_run(server.url, key, script, kind, clients, args.warmup, args.players)  # untimed
            with CpuWatch(redis_client, server.pid) as cpu:
                got = wrk_run(server.url, key, script, kind, clients, args.seconds, args.players)
            errors = {k: got[k] for k in ("connect", "read", "write", "status", "timeout")}
            if errors["status"]:
                raise BenchError(f"{adapter} {kind}: {got['status']} non-2xx answers: {got}")
            elapsed = got["duration_us"] / 1e6
            extra = {"max_ms": got["max_us"] / 1000, **cpu.shares(child="wrk")}
            extra["errors"] = {k: v for k, v in errors.items() if v}
            name = HTTP_NAMES[kind]
            rate = round(got["requests"] / elapsed, 1)
            p50, p99 = got["p50_us"] / 1000, got["p99_us"] / 1000
            n, took = got["requests"], round(elapsed, 3)
            out.append(Measured("http", adapter, name, clients, n, took, rate, "req/s", p50, p99))
            out[-1].extra.update(extra)
            print(f"    {name}, {clients} client(s): {rate:,.0f} req/s, ", end="")
            print(f"p50 {p50:.2f} ms, p99 {p99:.2f} ms", flush=True)
    return out


# --- report ---------------------------------------------------------------------------------


def notes(m: Measured) -> str:
    cpu = [
        f"{k.removesuffix('_cpu_pct')} {v}"
        for k, v in m.extra.items()
        if k.endswith("_cpu_pct") and (v or k == "other_cpu_pct")
    ]
    rest = [f"{k} {v}" for k, v in m.extra.items() if not k.endswith("_cpu_pct") and k != "errors"]
    if m.extra.get("errors"):
        rest.append(f"socket errors {m.extra['errors']}")
    return "; ".join([*rest, *(["CPU% " + ", ".join(cpu)] if cpu else [])])


def table(results: Sequence[Measured]) -> str:
    head = ("section", "adapter", "case", "clients", "rate", "unit", "p50 ms", "p99 ms", "notes")
    rows = [head]
    for m in results:
        rate = f"{m.per_s:,.2f}" if m.per_s < 100 else f"{m.per_s:,.0f}"
        p50 = "" if m.p50_ms is None else f"{m.p50_ms:.3f}"
        p99 = "" if m.p99_ms is None else f"{m.p99_ms:.3f}"
        rows.append(
            (m.section, m.adapter, m.case, str(m.clients), rate, m.unit, p50, p99, notes(m))
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    right = {3, 4, 6, 7}

    def line(row: Sequence[str]) -> str:
        cells = (
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        )
        return "  ".join(cells).rstrip()

    return "\n".join([line(rows[0]), line(["-" * w for w in widths]), *map(line, rows[1:])])


def find(
    results: Sequence[Measured], section: str, adapter: str, case: str, clients: int = 1
) -> Measured | None:
    return next(
        (
            m
            for m in results
            if (m.section, m.adapter, m.clients) == (section, adapter, clients)
            and m.case.startswith(case)
        ),
        None,
    )


def verdicts(results: Sequence[Measured]) -> list[str]:
    lines = []
    applied = find(results, "in-process", "redis", "apply()")
    references = [
        ("redis-py", "pipelined ZADD"),
        ("redis-py", "ZADD of"),
        ("redis-benchmark", "ZADD"),
    ]
    for adapter, case in references:
        raw = find(results, "reference", adapter, case)
        if applied is None or raw is None:
            continue
        share = applied.per_s / raw.per_s
        target = ""
        if case == "pipelined ZADD":
            met = "met" if share >= TARGET_APPLY_SHARE else "NOT MET"
            target = f" (target ≥ {TARGET_APPLY_SHARE:.0%}: {met})"
        lines.append(
            f"Redis projector apply(): {applied.per_s:,.0f} updates/s = {share:.0%} of "
            f"{adapter} {raw.case.split(' (')[0]} ({raw.per_s:,.0f}/s){target}"
        )
    for adapter in ("memory", "redis"):
        for case in ("top-10", "around-me"):
            one = find(results, "http", adapter, case, 1)
            many = find(results, "http", adapter, case, 16)
            if one is None or many is None or one.p99_ms is None or many.p99_ms is None:
                continue
            checks = [
                (
                    max(one.per_s, many.per_s) >= TARGET_REQ_PER_S,
                    f"{max(one.per_s, many.per_s):,.0f} req/s (≥ {TARGET_REQ_PER_S:,})",
                ),
                (
                    one.p99_ms < TARGET_P99_MS[1],
                    f"p99 {one.p99_ms:.2f} ms at 1 client (< {TARGET_P99_MS[1]:g})",
                ),
                (
                    many.p99_ms < TARGET_P99_MS[16],
                    f"p99 {many.p99_ms:.2f} ms at 16 (< {TARGET_P99_MS[16]:g})",
                ),
            ]
            text = "; ".join(f"{t} {'met' if ok else 'NOT MET'}" for ok, t in checks)
            lines.append(f"HTTP {adapter} {case}: {text}")
    noisy = [m for m in results if m.extra.get("other_cpu_pct", 0) > NOISY_PCT]
    if noisy:
        worst = max(noisy, key=lambda m: m.extra["other_cpu_pct"])
        lines.append(
            f"warning: other processes used over {NOISY_PCT}% of a core during {len(noisy)} "
            f"cases (at most {worst.extra['other_cpu_pct']}%, {worst.section} {worst.adapter} "
            f"{worst.case}): their figures are low; run again on a quiet machine"
        )
    return lines


def write_json(args: argparse.Namespace, about: dict[str, Any], results: list[Measured]) -> None:
    path = args.json
    if path is None and not args.quick:
        root = Path(__file__).resolve().parent
        name = "projector" if args.projector else "leaderboards"
        path = root / "results" / f"{name}-{about['revision'] or 'unknown'}.json"
    if path is None:
        return
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    document = {
        "machine": about,
        "settings": {k: v for k, v in settings.items() if k != "json"},
        "targets": {
            "req_per_s": TARGET_REQ_PER_S,
            "p99_ms_by_clients": TARGET_P99_MS,
            "apply_share_of_pipelined_zadd": TARGET_APPLY_SHARE,
        },
        "results": [asdict(m) for m in results],
        "verdicts": verdicts(results),
    }
    save_json(document, path)


# --- command --------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark one leaderboard of N players: memory vs Redis, in-process and "
        "through HTTP, with SQL and raw Redis references.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--players", type=int, default=1_000_000, help="players on the board")
    parser.add_argument("--seconds", type=int, default=8, help="wrk run per HTTP case")
    parser.add_argument("--warmup", type=int, default=1, help="untimed wrk run before each")
    parser.add_argument("--op-seconds", type=float, default=3.0, help="per in-process case")
    parser.add_argument("--sql-runs", type=int, default=3, help="naive SQL ranks (~1 s each)")
    parser.add_argument(
        "--quick", action="store_true", help="short cases for a smoke test (2 s per HTTP case)"
    )
    parser.add_argument(
        "--projector",
        type=int,
        default=0,
        metavar="ROUNDS",
        help="only the projector's apply() and its raw Redis references, alternated ROUNDS "
        "times (no HTTP, no SQL; wrk not needed)",
    )
    parser.add_argument(
        "--against",
        type=Path,
        default=None,
        metavar="SRC",
        help="with --projector: also another source tree's apply() (e.g. /tmp/pin-REV/src), "
        "alternated with this one's",
    )
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--seed", type=int, default=1, help="workload random seed")
    parser.add_argument("--data-parent", type=Path, default=None, help="where the data dir goes")
    parser.add_argument("--keep-data", action="store_true", help="keep the data dir and log")
    parser.add_argument(
        "--json",
        type=Path,
        default=None,
        help="write results here ('-': stdout); full runs default to "
        "bench/results/leaderboards-<revision>.json",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds, args.op_seconds, args.sql_runs = 2, 0.5, 1
    if args.players < 100 or args.seconds < 1 or args.warmup < 1 or args.sql_runs < 1:
        parser.error("--players ≥ 100, --seconds, --warmup and --sql-runs ≥ 1")
    return args


def delete_keys(client: redis.Redis, prefix: str) -> int:
    pattern = re.sub(r"([*?\[\]\\])", r"\\\1", prefix) + "*"
    names = list(client.scan_iter(match=pattern, count=1000))
    for start in range(0, len(names), 1000):
        client.unlink(*names[start : start + 1000])
    return len(names)


def projector_against(src: Path) -> type[RedisProjection]:
    """``RedisProjection`` of another source tree (a pinned revision), beside this one's."""
    path = src / "plaudit" / "leaderboards" / "redis.py"
    spec = importlib.util.spec_from_file_location("plaudit_against_redis", path)
    if spec is None or spec.loader is None or not path.is_file():
        raise BenchError(f"--against: no {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    against: type[RedisProjection] = module.RedisProjection
    return against


def projector_rounds(args: argparse.Namespace, client: redis.Redis) -> list[Measured]:
    """apply() and the raw reference in turn, ROUNDS times (and with --against, another
    revision's apply() on its own copy of the board, the order alternating each round): on a
    noisy machine the ratio of neighbours is what holds."""
    prefix = f"plaudit-bench-lb-{uuid.uuid4().hex[:8]}:"
    results: list[Measured] = []
    try:
        work = make_workload(args.players, args.seed)
        projections: dict[str, Projection] = {"redis": RedisProjection(client, f"{prefix}inproc:")}
        if args.against is not None:
            other = projector_against(args.against)
            projections["redis-against"] = other(client, f"{prefix}against:")
        for name, projection in projections.items():
            started = time.perf_counter()
            projection.replace(KEY, work.standings)
            print(f"{name}: replace() of {args.players:,} in {time.perf_counter() - started:.1f} s")
        fill(client, f"{prefix}raw:z", [subject_of(i) for i in range(args.players)])
        gc.collect()
        gc.freeze()
        # Untimed: the first updates after a fill run slower in Redis (its fresh allocations).
        warm = min(args.op_seconds, 3.0)
        for name, projection in projections.items():
            apply_batches(name, projection, args.players, warm, client)
        redis_py_pipelined(client, f"{prefix}raw:z", args.players, warm, 1)
        for number in range(1, args.projector + 1):
            order = list(projections.items())
            if number % 2 == 0:
                order.reverse()
            applied = {
                name: apply_batches(name, projection, args.players, args.op_seconds, client)
                for name, projection in order
            }
            raw = redis_py_pipelined(client, f"{prefix}raw:z", args.players, args.op_seconds, 1)
            results += [*applied.values(), *raw]
            shares = ", ".join(
                f"{name} {m.per_s:,.0f}/s = {m.per_s / raw[0].per_s:.0%}"
                for name, m in sorted(applied.items())
            )
            print(
                f"  round {number}: pipelined ZADD {raw[0].per_s:,.0f}/s; apply(): {shares}",
                flush=True,
            )
        return results
    finally:
        print(f"deleted {delete_keys(client, prefix)} Redis keys under {prefix}")


def run(args: argparse.Namespace, client: redis.Redis) -> list[Measured]:
    prefix = f"plaudit-bench-lb-{uuid.uuid4().hex[:8]}:"  # every Redis key of this run
    data_dir = Path(tempfile.mkdtemp(prefix="plaudit-bench-lb-", dir=args.data_parent))
    results: list[Measured] = []
    try:
        started = time.perf_counter()
        work = make_workload(args.players, args.seed)
        print(f"workload: {args.players:,} players in {time.perf_counter() - started:.1f} s")
        started = time.perf_counter()
        key = prepare_data_dir(data_dir, work.standings)
        print(f"data dir {data_dir}: filled in {time.perf_counter() - started:.1f} s", flush=True)

        print("in-process:", flush=True)
        memory = MemoryProjection()
        results += in_process("memory", memory, work, args.op_seconds, None)
        del memory
        gc.unfreeze()
        projection = RedisProjection(client, f"{prefix}inproc:")
        results += in_process("redis", projection, work, args.op_seconds, client)
        gc.unfreeze()
        delete_keys(client, f"{prefix}inproc:")
        results += service_phases(data_dir, key, work, args.op_seconds / 2)
        gc.collect()

        print("references:", flush=True)
        results += sql_references(data_dir / "plaudit.db", work, args.sql_runs, args.op_seconds)
        results += redis_py_pipelined(client, f"{prefix}raw:z", args.players, args.op_seconds)
        results += redis_benchmark(
            client, args.redis_url, f"{prefix}rb:z", args.players, args.quick
        )
        delete_keys(client, f"{prefix}raw:")
        delete_keys(client, f"{prefix}rb:")

        print("HTTP:", flush=True)
        results += over_http("memory", data_dir, key, work, args, client, None)
        results += over_http("redis", data_dir, key, work, args, client, f"{prefix}http:")
        return results
    finally:
        gone = delete_keys(client, prefix)
        print(f"deleted {gone} Redis keys under {prefix}")
        if args.keep_data:
            print(f"data kept in {data_dir}")
        else:
            shutil.rmtree(data_dir, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    stop_on_sigterm()
    about = machine()
    pinned_code(about)
    print(
        f"{about['date']}  {about['cpus']} CPUs ({about['cpu']})  Python {about['python']}  "
        f"plaudit {about['revision'] or '?'}"
    )
    print(f"code under test: {about['code']}")
    print("note: the bench, wrk, Redis and the server share this machine's cores")
    if shutil.which("wrk") is None and not args.projector:
        print("bench: error: wrk not found (apt-get install -y wrk)", file=sys.stderr)
        return 1
    warn_if_busy()
    client = redis.Redis.from_url(args.redis_url)
    try:
        client.ping()
        results = projector_rounds(args, client) if args.projector else run(args, client)
    except redis.ConnectionError as exc:
        print(f"bench: error: Redis at {args.redis_url}: {exc}", file=sys.stderr)
        return 1
    except BenchError as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bench: interrupted (the server was stopped)", file=sys.stderr)
        return 130
    finally:
        client.close()
    print()
    print(table(results))
    print()
    for line in verdicts(results):
        print(line)
    write_json(args, about, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
