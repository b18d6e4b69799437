"""Leaderboard benchmark: one all-time board of N players (default 1,000,000), the memory and
Redis projections side by side in one run, against references on the same data.

    .venv/bin/python -m bench.leaderboards [--players 1000000] [--json PATH]
    .venv/bin/python -m bench.leaderboards --players 20000 --quick     # smoke test, < 1 min

1. In-process, per adapter: top-10, around-me (k=5) of a random player, and ``apply()`` of
   batches of 1,000 changes (the projector's throughput).
2. References on the same data: the naive SQL rank (a window function over the whole board)
   and a COUNT(*) of better rows on SQLite; raw Redis (``redis-benchmark``, and redis-py
   pipelined ZADD), the limit the Redis projection is compared with.
3. Through HTTP, per adapter: a real ``plaudit serve`` on 127.0.0.1 whose start-up rebuild
   loads the board from SQLite, loaded by ``wrk`` with 1 and 16 connections.

Machines here are noisy: compare the ratios within one run. Ranks are checked against a sort
of the generated data. Only processes started here are stopped (by PID), and only Redis keys
under this run's prefix are deleted.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import random
import re
import resource
import shutil
import signal
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

import httpx
import redis

from bench.ingest import (
    BenchError,
    Server,
    cpu_seconds,
    free_port,
    machine,
    machine_busy_seconds,
    percentile,
    stop,
    wait_ready,
)
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
EPOCH_2026_US = 1_767_225_600_000_000

WRK_SCRIPT = """\
-- GET one kind of path, random players for around-me; prints a JSON summary at the end.
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
    section: str  # in-process | reference | http
    adapter: str
    case: str
    clients: int
    ops: int
    seconds: float
    per_s: float
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
        Standing(subject_of(i), int(rng.expovariate(1 / 2000)) * SCALE, rng.randrange(year_us))
        for i in range(players)
    ]
    standings = [Standing(s.subject, s.units, EPOCH_2026_US + s.reached_us) for s in standings]
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
    latencies_ns: list[int] | None,
    unit: str = "ops/s",
    clients: int = 1,
    **extra: Any,
) -> Measured:
    lat = sorted(latencies_ns or [])
    return Measured(
        section=section,
        adapter=adapter,
        case=case,
        clients=clients,
        ops=ops,
        seconds=round(seconds, 3),
        per_s=round(ops / seconds, 1) if seconds > 0 else math.nan,
        unit=unit,
        p50_ms=round(percentile(lat, 50) / 1e6, 4) if lat else None,
        p99_ms=round(percentile(lat, 99) / 1e6, 4) if lat else None,
        extra=extra,
    )


def redis_cpu(client: redis.Redis | None) -> float:
    if client is None:
        return 0.0
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def check_ranks(where: str, found: dict[str, int | None], truth: dict[str, int]) -> None:
    wrong = {s: (r, truth[s]) for s, r in found.items() if r != truth[s]}
    if wrong:
        raise BenchError(f"{where}: wrong ranks (found, expected): {dict(list(wrong.items())[:5])}")


# --- in-process -----------------------------------------------------------------------------


def in_process(
    adapter: str,
    projection: Projection,
    work: Workload,
    seconds: float,
    redis_client: redis.Redis | None,
) -> list[Measured]:
    players = len(work.standings)
    memory_before = redis_memory(redis_client) if redis_client else rss_bytes(os.getpid())
    started = time.perf_counter()
    projection.replace(KEY, work.standings)
    load_s = time.perf_counter() - started
    memory_after = redis_memory(redis_client) if redis_client else rss_bytes(os.getpid())
    held_mb = round((memory_after - memory_before) / 2**20)
    print(f"  {adapter}: replace() of {players:,} in {load_s:.1f} s (+{held_mb:,} MB)", flush=True)
    if projection.size(KEY) != players:
        raise BenchError(f"{adapter}: {projection.size(KEY)} held after replace, not {players}")
    found = {s: getattr(projection.standing(KEY, s), "rank", None) for s in work.ranks}
    check_ranks(f"{adapter} projection", found, work.ranks)
    gc.collect()
    gc.freeze()
    out = [measured("in-process", adapter, f"load {players:,} (replace)", players, load_s, None)]
    out[0].extra["memory_mb"] = held_mb

    top, top_s = timed_calls(lambda _: projection.top(KEY, 0, TOP), seconds)
    out.append(measured("in-process", adapter, "top-10", len(top), top_s, top))
    picks = work.picks
    around, around_s = timed_calls(
        lambda i: projection.around(KEY, picks[i % len(picks)], AROUND), seconds
    )
    out.append(measured("in-process", adapter, f"around-me k={AROUND}", len(around), around_s, around))
    out.append(apply_batches(adapter, projection, players, seconds, redis_client))
    return out


def apply_batches(
    adapter: str,
    projection: Projection,
    players: int,
    seconds: float,
    redis_client: redis.Redis | None,
) -> Measured:
    """Fresh changes each batch (re-applying a standing is a no-op); only apply() is timed."""
    rng = random.Random(7)
    reached = EPOCH_2026_US + 400 * 86_400_000_000
    spent: list[int] = []
    cursor = 1
    cpu_before = redis_cpu(redis_client)
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        batch = []
        for _ in range(BATCH):
            reached += 1
            units = rng.randrange(20_000) * SCALE
            batch.append(Change(KEY, subject_of(rng.randrange(players)), units, reached))
        cursor += 1
        before = time.perf_counter_ns()
        projection.apply(batch, cursor)
        spent.append(time.perf_counter_ns() - before)
    busy = sum(spent) / 1e9
    redis_pct = round(100 * (redis_cpu(redis_client) - cpu_before) / busy, 1)
    return measured(
        "in-process",
        adapter,
        f"apply() x{BATCH:,} (ms/batch)",
        len(spent) * BATCH,
        busy,
        spent,
        unit="updates/s",
        **({"redis_cpu_pct": redis_pct} if redis_client else {}),
    )


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def redis_memory(client: redis.Redis) -> int:
    return int(client.info("memory")["used_memory"])


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
# As SqlBoards.rank_of counts, for closed windows.
BETTER_ROWS = (
    "SELECT count(*) FROM board_scores WHERE tenant_id = ? AND board_id = ? AND window = ? "
    "{listed}AND (units > ? OR (units = ? AND reached_us < ?) "
    "OR (units = ? AND reached_us = ? AND subject < ?))"
)
SQL_TOP = (
    "SELECT subject, units, reached_us FROM board_scores WHERE tenant_id = ? AND board_id = ? "
    "AND window = ? AND entries > 0 ORDER BY units DESC, reached_us, subject LIMIT 10"
)


def sql_references(db: Path, work: Workload, runs: int, seconds: float) -> list[Measured]:
    by_subject = {s.subject: s for s in work.standings}
    checked = list(work.ranks)
    out = []
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        board = (TENANT, BOARD, WINDOW)
        lat, found = [], {}
        for subject in checked[:runs]:
            before = time.perf_counter_ns()
            with deadline_for(conn, 120):
                found[subject] = conn.execute(NAIVE_RANK, (*board, subject)).fetchone()[0]
            lat.append(time.perf_counter_ns() - before)
        check_ranks("SQL rank()", found, work.ranks)
        out.append(
            measured("reference", "sqlite", "rank() OVER naive rank", len(lat), sum(lat) / 1e9, lat)
        )
        for name, listed in (("entries > 0", "AND entries > 0 "), ("index only", "")):
            query = BETTER_ROWS.format(listed=listed)
            lat, found = [], {}
            for subject in checked[: runs * 3]:
                s = by_subject[subject]
                args = (*board, s.units, s.units, s.reached_us, s.units, s.reached_us, subject)
                before = time.perf_counter_ns()
                with deadline_for(conn, 60):
                    found[subject] = conn.execute(query, args).fetchone()[0] + 1
                lat.append(time.perf_counter_ns() - before)
            check_ranks(f"SQL count ({name})", found, work.ranks)
            plan = " / ".join(r[3] for r in conn.execute(f"EXPLAIN QUERY PLAN {query}", args))
            case = f"COUNT(*) better rows, {name}"
            out.append(
                measured("reference", "sqlite", case, len(lat), sum(lat) / 1e9, lat, plan=plan)
            )
        lat, top_s = timed_calls(lambda _: conn.execute(SQL_TOP, board).fetchall(), seconds)
        out.append(measured("reference", "sqlite", "top-10 by index", len(lat), top_s, lat))
    return out


def redis_py_pipelined(
    client: redis.Redis, key: str, players: int, seconds: float
) -> list[Measured]:
    """ZADD of existing members, 1,000 per round trip: one command each, and one ZADD of 1,000."""
    fill(client, key, [subject_of(i) for i in range(players)])
    rng = random.Random(11)
    out = []
    for case in ("pipelined ZADD x1,000", "ZADD of 1,000 members"):
        spent: list[int] = []
        cpu_before = redis_cpu(client)
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            batch = [(subject_of(rng.randrange(players)), -rng.randrange(20_000)) for _ in range(BATCH)]
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
        cpu = round(100 * (redis_cpu(client) - cpu_before) / busy, 1)
        out.append(
            measured(
                "reference", "redis-py", f"{case} (ms/batch)", len(spent) * BATCH, busy, spent,
                unit="updates/s", redis_cpu_pct=cpu,
            )
        )
    return out


def fill(client: redis.Redis, key: str, members: Sequence[str]) -> None:
    for start in range(0, len(members), 10_000):
        chunk = members[start : start + 10_000]
        client.zadd(key, {m: -((start + i) * 7919 % 20_000) for i, m in enumerate(chunk)})


def redis_benchmark(url: str, key: str, players: int, quick: bool) -> list[Measured]:
    """The limit: Redis' own C client. Members are ``member:%012d`` on a board of ``players``."""
    exe = shutil.which("redis-benchmark")
    if exe is None:
        print("  redis-benchmark not found (it comes with redis-server): skipped")
        return []
    parts = urlsplit(url)
    base = [exe, "-h", parts.hostname or "127.0.0.1", "-p", str(parts.port or 6379)]
    base += ["--dbnum", (parts.path.strip("/") or "0"), "--csv", "-r", str(players)]
    scale = 10 if quick else 1
    cases = [
        ("ZADD -P 1000 (ms/batch)", 1, ["-P", "1000"], 2_000_000, "updates/s",
         ["zadd", key, "__rand_int__", "member:__rand_int__"]),
        ("ZREVRANK", 1, [], 100_000, "ops/s", ["zrevrank", key, "member:__rand_int__"]),
        ("ZREVRANK", 16, [], 300_000, "ops/s", ["zrevrank", key, "member:__rand_int__"]),
        ("ZREVRANGE 0 9 WITHSCORES", 1, [], 100_000, "ops/s",
         ["zrevrange", key, "0", "9", "withscores"]),
        ("ZREVRANGE 0 9 WITHSCORES", 16, [], 300_000, "ops/s",
         ["zrevrange", key, "0", "9", "withscores"]),
    ]
    out = []
    for case, clients, extra, count, unit, command in cases:
        n = count // scale
        argv = [*base, "-c", str(clients), "-n", str(n), *extra, *command]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=180, check=False)
        rows = [line for line in done.stdout.splitlines() if line.startswith('"') and "rps" not in line]
        if done.returncode != 0 or not rows:
            raise BenchError(f"redis-benchmark failed: {done.stderr.strip() or done.stdout[-500:]}")
        cells = [c.strip('"') for c in rows[-1].split('","')]
        rps, p50, p99 = float(cells[1]), float(cells[4]), float(cells[6])
        out.append(
            Measured("reference", "redis-benchmark", case, clients, n, round(n / rps, 3),
                     round(rps, 1), unit, p50, p99)
        )
    return out


# --- HTTP -----------------------------------------------------------------------------------


def server_env(data_dir: Path, redis_url: str | None, prefix: str | None) -> dict[str, str]:
    # Only our settings: a PLAUDIT_* in the caller's shell must not redirect the server.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLAUDIT_")}
    env["PLAUDIT_DATA_DIR"] = str(data_dir)
    env["PLAUDIT_LOG_LEVEL"] = "warning"
    if redis_url is not None and prefix is not None:
        env["PLAUDIT_REDIS_URL"] = redis_url
        env["PLAUDIT_LEADERBOARDS__REDIS_PREFIX"] = prefix
    return env


@contextmanager
def running_server(env: dict[str, str], data_dir: Path, timeout: float) -> Iterator[Server]:
    """`plaudit serve` on a free 127.0.0.1 port; stopped by its PID on the way out."""
    log_path = data_dir / "server.log"
    port = free_port()
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "plaudit", "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            cwd=data_dir,  # no stray .env from the caller's directory
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a Ctrl-C reaches us, and we stop it in order
        )
    try:
        yield Server(process, f"http://127.0.0.1:{port}", log_path)
    finally:
        stop(process)


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
    env = {**os.environ, "BENCH_API_KEY": key}
    done = subprocess.run(
        argv, env=env, capture_output=True, text=True, timeout=seconds + 60, check=False
    )
    found = re.search(r"^BENCH-RESULT (\{.*\})$", done.stdout, re.MULTILINE)
    if done.returncode != 0 or found is None:
        raise BenchError(f"wrk failed ({done.returncode}): {done.stderr.strip() or done.stdout}")
    result: dict[str, Any] = json.loads(found.group(1))
    return result


def http_case(
    server: Server,
    adapter: str,
    key: str,
    script: Path,
    case: tuple[str, int],
    args: argparse.Namespace,
    redis_client: redis.Redis | None,
) -> Measured:
    kind, clients = case
    wrk_run(server.url, key, script, kind, clients, args.warmup, args.players)  # untimed
    server_cpu, redis_before = cpu_seconds(server.pid), redis_cpu(redis_client)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    busy, mine = machine_busy_seconds(), time.process_time()
    got = wrk_run(server.url, key, script, kind, clients, args.seconds, args.players)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    server_used = (cpu_seconds(server.pid) or 0.0) - (server_cpu or 0.0)
    wrk_used = after.ru_utime + after.ru_stime - children.ru_utime - children.ru_stime
    redis_used = redis_cpu(redis_client) - redis_before
    elapsed = got["duration_us"] / 1e6
    other = (machine_busy_seconds() or 0.0) - (busy or 0.0) - server_used - wrk_used - redis_used
    other -= time.process_time() - mine
    errors = {k: got[k] for k in ("connect", "read", "write", "status", "timeout") if got[k]}
    if errors.get("status"):
        raise BenchError(f"{adapter} {kind}: {got['status']} non-2xx answers in {got}")
    name = {"healthz": "GET /healthz", "top": "top-10", "around": f"around-me k={AROUND}"}[kind]
    return Measured(
        "http", adapter, name, clients, got["requests"], round(elapsed, 3),
        round(got["requests"] / elapsed, 1), "req/s", got["p50_us"] / 1000, got["p99_us"] / 1000,
        {
            "max_ms": got["max_us"] / 1000,
            "server_cpu_pct": round(100 * server_used / elapsed),
            "wrk_cpu_pct": round(100 * wrk_used / elapsed),
            "redis_cpu_pct": round(100 * redis_used / elapsed),
            "other_cpu_pct": round(100 * max(0.0, other) / elapsed),
            "errors": errors,
        },
    )


def over_http(
    adapter: str,
    data_dir: Path,
    key: str,
    work: Workload,
    args: argparse.Namespace,
    redis_client: redis.Redis | None,
    prefix: str | None,
) -> list[Measured]:
    script = data_dir / "bench.lua"
    script.write_text(WRK_SCRIPT)
    env = server_env(data_dir, args.redis_url if redis_client else None, prefix)
    timeout = 60 + len(work.standings) / 4000
    started = time.perf_counter()
    with running_server(env, data_dir, timeout) as server:
        wait_ready(server, timeout)
        ready_s = time.perf_counter() - started
        rss_mb = round(rss_bytes(server.pid) / 2**20)
        print(f"  {adapter}: server pid {server.pid} ready in {ready_s:.1f} s, {rss_mb:,} MB RSS")
        check_server(server.url, key, work)
        out = [
            measured("http", adapter, "start-up (rebuild) to ready", 1, ready_s, None,
                     unit="starts/s", server_rss_mb=rss_mb)
        ]
        cases = [("healthz", 1), ("healthz", 16), ("top", 1), ("top", 16)]
        cases += [("around", 1), ("around", 16)]
        for case in cases:
            out.append(http_case(server, adapter, key, script, case, args, redis_client))
            print(f"    {row_text(out[-1])}", flush=True)
    return out


# --- report ---------------------------------------------------------------------------------


def row_text(m: Measured) -> str:
    p50 = "" if m.p50_ms is None else f"p50 {m.p50_ms:.3f} ms"
    p99 = "" if m.p99_ms is None else f"p99 {m.p99_ms:.3f} ms"
    return f"{m.case} c{m.clients}: {m.per_s:,.0f} {m.unit} {p50} {p99}"


def table(results: Sequence[Measured]) -> str:
    head = ("section", "adapter", "case", "clients", "rate", "unit", "p50 ms", "p99 ms", "notes")
    rows = [head]
    for m in results:
        notes = ", ".join(
            f"{k.removesuffix('_pct').replace('_', ' ')} {v}%" if k.endswith("_pct") else f"{k} {v}"
            for k, v in m.extra.items()
            if k not in ("plan", "errors") or v
        )
        rows.append(
            (
                m.section,
                m.adapter,
                m.case,
                str(m.clients),
                f"{m.per_s:,.1f}" if m.per_s < 100 else f"{m.per_s:,.0f}",
                m.unit,
                "" if m.p50_ms is None else f"{m.p50_ms:.3f}",
                "" if m.p99_ms is None else f"{m.p99_ms:.3f}",
                notes,
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    right = {3, 4, 6, 7}
    lines = [
        "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))).rstrip()
        for r in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def find(results: Sequence[Measured], adapter: str, case: str, clients: int = 1) -> Measured | None:
    return next(
        (m for m in results if m.adapter == adapter and m.case.startswith(case) and m.clients == clients),
        None,
    )


def verdicts(results: Sequence[Measured]) -> list[str]:
    lines = []
    applied = find(results, "redis", "apply()")
    for reference in ("pipelined ZADD", "ZADD of 1,000", "ZADD -P 1000"):
        raw = next((m for m in results if m.section == "reference" and m.case.startswith(reference)), None)
        if applied is None or raw is None:
            continue
        share = applied.per_s / raw.per_s
        met = "MET" if share >= TARGET_APPLY_SHARE else "NOT MET"
        label = f"{raw.adapter} {raw.case.split(' (')[0]}"
        target = f" (target ≥ {TARGET_APPLY_SHARE:.0%}: {met})" if reference == "pipelined ZADD" else ""
        lines.append(
            f"Redis projector apply(): {applied.per_s:,.0f} updates/s = {share:.0%} of {label} "
            f"({raw.per_s:,.0f}/s){target}"
        )
    for adapter in ("memory", "redis"):
        for case in ("top-10", "around-me"):
            one, many = find(results, adapter, case, 1), find(results, adapter, case, 16)
            if one is None or many is None or one.section != "http":
                continue
            checks = [
                (many.per_s >= TARGET_REQ_PER_S, f"{many.per_s:,.0f} req/s at 16 (≥ {TARGET_REQ_PER_S:,})"),
                ((one.p99_ms or math.inf) < TARGET_P99_MS[1], f"p99 {one.p99_ms:.2f} ms at 1 (< {TARGET_P99_MS[1]:g})"),
                ((many.p99_ms or math.inf) < TARGET_P99_MS[16], f"p99 {many.p99_ms:.2f} ms at 16 (< {TARGET_P99_MS[16]:g})"),
            ]
            text = "; ".join(f"{t}: {'met' if ok else 'NOT MET'}" for ok, t in checks)
            lines.append(f"HTTP {adapter} {case}: {text}")
    return lines
