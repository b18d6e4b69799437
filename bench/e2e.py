"""End-to-end benchmark: HTTP ingest → scored → on the leaderboard, for the embedded and the
scale-out deployments side by side in one run.

    .venv/bin/python bench/e2e.py [--events 60000] [--rate 5000] [--seconds 15] [--json PATH]
    .venv/bin/python bench/e2e.py --only scale-out

Per deployment, after publishing a rule set (xp = ``event.properties.points``, one board on
xp) and an untimed warm-up that puts the ~1,000 actors on the board:

1. Throughput: N pre-built events in batches of 1,000 from 4 concurrent clients, and the time
   from the first send until the sum of the board's scores is the sum of their points; in
   several rounds of new events (``--rounds``, 3 by default), reported each and by the
   median round (a round of 60,000 events lasts about 3 s, and this machine's runs vary by
   up to a fifth). The first round runs before the latency case, the others after it.
2. Latency at a fixed rate: a batch of background events every 20 ms, and every 100 ms a
   probe event (1 point) for one player whose standing is polled every ~5 ms; a probe's
   latency is from its send to the first poll that shows it (so it includes up to one poll).

The embedded deployment is one ``plaudit serve`` on SQLite; the scale-out one 2 API and 2
``plaudit worker`` processes on PostgreSQL, Redis and NATS JetStream (tests.support.cluster).
Every process started here is stopped by its PID, also on an error or Ctrl-C, and every wait
is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import math
import os
import random
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Coroutine, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import orjson
import psycopg

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `python bench/e2e.py`: bench and tests are packages here
    sys.path.insert(0, str(ROOT))

from tests.support.cluster import cluster  # noqa: E402
from tests.support.postgres import POSTGRES_URL  # noqa: E402

from bench.ingest import (  # noqa: E402
    BenchError,
    create_key,
    machine,
    machine_busy_seconds,
    percentile,
    pinned_code,
    python_speed_us,
    running_server,
    save_json,
    stop_on_sigterm,
    warn_if_busy,
)

RULESET = """\
currencies: [xp]
rules:
  - {id: task, on: task.done, award: {xp: "event.properties.points"}}
leaderboards:
  - {id: xp, name: XP, metric: {currency: xp}}
"""
BOARD = "xp"
BATCH = 1000  # events per request in the throughput case
CLIENTS = 4
ACTORS = 1000
TICK = 0.02  # a background batch this often in the latency case
PROBE_EVERY = 0.1
POLL_EVERY = 0.005  # the probe's standing
BOARD_POLL_DURING_INGEST = 0.25  # the whole board (1,000 entries) is not free to read
BOARD_POLL_AFTER_INGEST = 0.05
INGEST_TIMEOUT = 300.0
BOARD_TIMEOUT = 120.0  # after the last event was acknowledged
SETUP_TIMEOUT = 60.0
REQUEST_TIMEOUT = 60.0
TARGET_E2E_PER_S = 20_000  # scale-out, from the first send until the board is complete
TARGET_P99_MS = 250.0  # event to leaderboard, at 5,000 events/s
NOISY_PCT = 10  # other processes' CPU (% of a core) above which a case is flagged
JSON_HEADERS = {"Content-Type": "application/json"}
NOTABLE = re.compile(r"ERROR|WARNING|CRITICAL|Traceback|Exception|\[ERR\]|\[WRN\]|\[FTL\]")


# --- workload -------------------------------------------------------------------------------


@dataclass(slots=True)
class Workload:
    """Request bodies built before the clock starts, and the points they carry."""

    bodies: list[bytes]
    sizes: list[int]
    points: int

    @property
    def events(self) -> int:
        return sum(self.sizes)


def task_event(event_id: str, actor: str, points: int, occurred_at: str) -> dict[str, Any]:
    return {
        "id": event_id,
        "source": "lms",
        "type": "task.done",
        "actor": actor,
        "occurred_at": occurred_at,
        "properties": {"points": points},
    }


def build_workload(
    tag: str, events: int, batch: int, rng: random.Random, occurred_at: str
) -> Workload:
    """``events`` to random actors (points 1..9), in bodies of ``batch``."""
    bodies, sizes, points = [], [], 0
    for start in range(0, events, batch):
        chunk = []
        for n in range(start, min(start + batch, events)):
            p = rng.randint(1, 9)
            points += p
            chunk.append(
                task_event(f"{tag}-{n}", f"user-{rng.randrange(ACTORS):04d}", p, occurred_at)
            )
        bodies.append(orjson.dumps(chunk))
        sizes.append(len(chunk))
    return Workload(bodies, sizes, points)


def build_warm_up(rng: random.Random, occurred_at: str) -> Workload:
    """One event per actor, so every player exists before the timed runs."""
    chunk = [
        task_event(f"warm-{a}", f"user-{a:04d}", rng.randint(1, 9), occurred_at)
        for a in range(ACTORS)
    ]
    points = sum(e["properties"]["points"] for e in chunk)
    return Workload([orjson.dumps(chunk)], [len(chunk)], points)


def probe_body(k: int, occurred_at: str) -> bytes:
    return orjson.dumps([task_event(f"probe-{k}", "probe", 1, occurred_at)])


# --- HTTP -----------------------------------------------------------------------------------


def session(url: str, key: str, connections: int) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        base_url=url,
        headers={"Authorization": f"Bearer {key}"},
        connector=aiohttp.TCPConnector(limit=connections),
        timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT),
    )


async def get_json(s: aiohttp.ClientSession, path: str, params: dict[str, str]) -> Any:
    async with s.get(path, params=params) as response:
        content = await response.read()
    if response.status != 200:
        raise BenchError(f"GET {path}: {response.status} {content[:500]!r}")
    return orjson.loads(content)


async def post_events(s: aiohttp.ClientSession, body: bytes, size: int) -> dict[str, Any]:
    """POST a batch; its report, once every event in it is accepted (else BenchError)."""
    async with s.post("/v1/events", data=body, headers=JSON_HEADERS) as response:
        content = await response.read()
    if response.status != 200:
        raise BenchError(f"POST /v1/events: {response.status} {content[:500]!r}")
    report: dict[str, Any] = orjson.loads(content)
    if report["accepted"] != size:
        raise BenchError(
            f"{report['accepted']} of {size} events accepted (duplicates "
            f"{report['duplicates']}, rejected {report['rejected']}): {report['results'][:2]}"
        )
    return report


async def board_total(s: aiohttp.ClientSession) -> float:
    """The sum of every score on the board, page by page."""
    total, params = 0.0, {"limit": "1000"}
    while True:
        page = await get_json(s, f"/v1/leaderboards/{BOARD}/standings", params)
        total += sum(float(item["score"]) for item in page["items"])
        if not page["next_cursor"]:
            return total
        params = {"limit": "1000", "cursor": page["next_cursor"]}


async def probe_score(s: aiohttp.ClientSession, subject: str) -> float:
    found = await get_json(s, f"/v1/leaderboards/{BOARD}/standings/{subject}", {"around": "0"})
    entry = found["entry"]
    return 0.0 if entry is None else float(entry["score"])


async def sleep_until(moment: float) -> None:
    delay = moment - time.perf_counter()
    if delay > 0:
        await asyncio.sleep(delay)


def publish(url: str, key: str) -> None:
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=url, headers=headers, timeout=REQUEST_TIMEOUT) as client:
        draft = client.post("/v1/rulesets", json={"name": "e2e", "source": RULESET})
        if draft.status_code != 201:
            raise BenchError(f"POST /v1/rulesets: {draft.status_code} {draft.text[:500]}")
        done = client.post(f"/v1/rulesets/{draft.json()['id']}/publish", json={})
        if done.status_code != 201:
            raise BenchError(f"publish: {done.status_code} {done.text[:500]}")


# --- the deployments ------------------------------------------------------------------------


@dataclass(slots=True)
class Deployment:
    name: str
    url: str
    key: str
    roles: dict[str, list[int]]  # role → PIDs whose process trees it counts
    services: dict[str, str]  # role → process name of a shared service it uses
    logs: list[Path]
    notable: list[str] = field(default_factory=list)  # warnings and errors in its logs
    tails: list[str] = field(default_factory=list)  # the logs' last lines, to show on a failure


def notable_lines(logs: Sequence[Path]) -> list[str]:
    lines = []
    for path in logs:
        if path.exists():
            text = path.read_text(errors="replace").splitlines()
            lines += [f"{path.name}: {line}" for line in text if NOTABLE.search(line)]
    return lines


def log_tails(logs: Sequence[Path], count: int = 15) -> list[str]:
    lines = []
    for path in logs:
        if path.exists():
            text = path.read_text(errors="replace").splitlines()[-count:]
            lines += [f"{path.name}: {line}" for line in text]
    return lines


def read_logs(made: Deployment) -> None:
    """Before the directory goes: the lines worth reporting."""
    made.notable = notable_lines(made.logs)
    made.tails = log_tails(made.logs)


@contextmanager
def embedded(parent: Path | None, keep: bool) -> Iterator[Deployment]:
    data_dir = Path(tempfile.mkdtemp(prefix="plaudit-e2e-", dir=parent))
    made = None
    try:
        key = create_key(data_dir, "admin")
        with running_server(data_dir, ready_timeout=SETUP_TIMEOUT) as server:
            roles = {"server": [server.pid]}
            made = Deployment("embedded", server.url, key, roles, {}, [server.log_path])
            yield made
    finally:
        if made is not None:
            read_logs(made)
        remove(data_dir, keep)


@contextmanager
def scale_out(parent: Path | None, keep: bool) -> Iterator[Deployment]:
    root = Path(tempfile.mkdtemp(prefix="plaudit-e2e-cluster-", dir=parent))
    made = None
    try:
        with cluster(root, api_processes=2, workers=2) as c:
            assert c.api is not None
            assert c.nats.process is not None
            roles = {
                "api": [c.api.pid],
                "workers": [w.pid for w in c.workers if w is not None],
                "nats": [c.nats.process.pid],
            }
            services = {"postgres": "postgres", "redis": "redis-server"}
            logs = [root / "api.log", root / "worker0.log", root / "worker1.log"]
            logs.append(root / "nats" / "nats.log")
            made = Deployment("scale-out", c.url, c.key, roles, services, logs)
            yield made
    except AssertionError as exc:  # how the test helper reports a failed start
        if made is None:
            raise BenchError(f"the cluster did not start: {exc}") from exc
        raise
    finally:
        if made is not None:
            read_logs(made)
        remove(root, keep)


def remove(directory: Path, keep: bool) -> None:
    if keep:
        print(f"data and logs kept in {directory}")
    else:
        shutil.rmtree(directory, ignore_errors=True)


# --- CPU per role ---------------------------------------------------------------------------


def processes() -> dict[int, tuple[int, str, int, int]]:
    """pid → (parent pid, name, CPU ticks, start time) of every process we can read. The ticks
    include reaped children's (PostgreSQL's autovacuum workers come and go within a case).
    A kernel worker's name changes with its work: the start time tells a process."""
    found = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            text = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        name = text[text.index("(") + 1 : text.rindex(")")]
        fields = text[text.rindex(")") + 2 :].split()
        ticks = sum(int(v) for v in fields[11:15])  # utime stime cutime cstime
        found[int(entry.name)] = (int(fields[1]), name, ticks, int(fields[19]))
    return found


class CpuUse:
    """CPU (% of one core) per role over a stretch of time: the deployment's processes and
    their children, the shared services, this bench, and everything else on the machine."""

    def __init__(self, deployment: Deployment) -> None:
        self.roots = {pid: role for role, pids in deployment.roles.items() for pid in pids}
        self.roots[os.getpid()] = "bench"
        self.services = {name: role for role, name in deployment.services.items()}
        self.before = processes()
        self.busy = machine_busy_seconds()
        self.checkpoints_before = checkpoints() if "postgres" in self.services.values() else None
        self.checkpoints: int | None = None  # PostgreSQL's, during the stretch, once stopped
        self.started = time.perf_counter()
        self.others: dict[str, float] = {}  # the busiest other processes, once stopped

    def role(self, pid: int, table: dict[int, tuple[int, str, int, int]]) -> str | None:
        name = table[pid][1]
        while pid in table:
            if pid in self.roots:
                return self.roots[pid]
            pid = table[pid][0]
        return self.services.get(name)

    def stop(self) -> dict[str, float]:
        if self.checkpoints_before is not None:
            now = checkpoints()
            self.checkpoints = None if now is None else now - self.checkpoints_before
        after = processes()
        busy = machine_busy_seconds()
        elapsed = time.perf_counter() - self.started
        tick = os.sysconf("SC_CLK_TCK")
        used = {role: 0.0 for role in [*self.roots.values(), *self.services.values()]}
        unknown: dict[str, float] = defaultdict(float)  # by process name
        for pid, (_, name, ticks, born) in after.items():
            earlier = self.before.get(pid)
            start = earlier[2] if earlier is not None and earlier[3] == born else 0
            role = self.role(pid, after)
            if role is None:
                unknown[name] += (ticks - start) / tick
            else:
                used[role] += (ticks - start) / tick
        share = {role: round(100 * seconds / elapsed, 1) for role, seconds in used.items()}
        if busy is not None and self.busy is not None:
            other = max(0.0, busy - self.busy - sum(used.values()))
            share["other"] = round(100 * other / elapsed, 1)
        # What "other" was (the rest of it: the kernel, and processes that ended meanwhile).
        self.others = {
            name: round(100 * seconds / elapsed, 1)
            for name, seconds in sorted(unknown.items(), key=lambda kv: -kv[1])[:4]
            if seconds > 0
        }
        return share


def checkpoints() -> int | None:
    """Checkpoints PostgreSQL's server has made so far (timed and requested; a checkpoint
    makes the next change of each page log the whole page), None if it cannot be asked."""
    try:
        with psycopg.connect(POSTGRES_URL.replace("+psycopg", ""), connect_timeout=5) as conn:
            row = conn.execute(
                "SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter"
            ).fetchone()
    except psycopg.Error:
        return None
    return None if row is None else int(row[0])


def cpu_text(share: dict[str, float]) -> str:
    return ", ".join(f"{role} {pct:.0f}%" for role, pct in share.items())


# --- the cases ------------------------------------------------------------------------------


@dataclass(slots=True)
class Throughput:
    events: int
    ingest_s: float
    ingest_per_s: float
    complete_s: float  # first send → the board's total complete
    e2e_per_s: float
    on_board_at_ingest_end_pct: float  # of the case's points, at the first board read after
    cpu: dict[str, float]
    cpu_others: dict[str, float]  # the busiest processes in "other", by name
    cpu_us_per_event: float  # the deployment's CPU (bench and other left out) per event
    checkpoints: int | None = None  # PostgreSQL's during the case (scale-out)


@dataclass(slots=True)
class Latency:
    target_rate: float
    seconds: float
    events: int
    sent_per_s: float
    acknowledged_per_s: float
    sender_max_late_ms: float  # how far a batch's send fell behind its schedule
    probes: int
    probes_seen: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    probe_ingest_p50_ms: float  # send → response of the probe's POST
    probe_ingest_p99_ms: float
    poll_period_ms: float  # median time between the starts of two probe polls
    drained_s: float  # last send → the board's total complete
    cpu: dict[str, float]
    cpu_others: dict[str, float]
    # Where a probe's time went, from the server's own timestamps (p50, p99 ms): see PHASES.
    phases: dict[str, tuple[float, float]] = field(default_factory=dict)
    checkpoints: int | None = None  # PostgreSQL's during the case (scale-out)
    # Each probe's (send, s after the first; latency, ms): whether the slow ones cluster.
    probe_series: list[tuple[float, float]] = field(default_factory=list)


@dataclass(slots=True)
class Result:
    deployment: str
    setup_s: float  # publish, warm-up, until the warm-up is on the board
    throughput: Throughput  # the median round
    latency: Latency
    rounds: list[Throughput] = field(default_factory=list)  # in the order run
    notable_log_lines: int = 0
    log_excerpt: list[str] = field(default_factory=list)


async def wait_for_total(
    s: aiohttp.ClientSession, expected: float, within: float, every: float
) -> float:
    """Poll the board until its total is ``expected``; when (perf_counter) it was seen."""
    deadline = time.perf_counter() + within
    total = math.nan
    while time.perf_counter() < deadline:
        total = await board_total(s)
        if abs(total - expected) < 0.5:
            return time.perf_counter()
        await asyncio.sleep(every)
    raise BenchError(f"the board's total is {total:,.0f} after {within:.0f} s, not {expected:,}")


async def set_up(dep: Deployment, warm: Workload, probe: bytes) -> tuple[str, int]:
    """Warm-up events and probe 0 on the board: the probe player's id and the board's total."""
    async with session(dep.url, dep.key, 2) as s:
        await post_events(s, warm.bodies[0], warm.sizes[0])
        report = await post_events(s, probe, 1)
        expected = warm.points + 1
        await wait_for_total(s, expected, SETUP_TIMEOUT, 0.1)
    return str(report["results"][0]["player_id"]), expected


async def throughput(dep: Deployment, work: Workload, base: int) -> Throughput:
    cpu = CpuUse(dep)
    expected = base + work.points
    ingested = asyncio.Event()
    samples: list[tuple[float, float]] = []  # (when, board total)
    pending = iter(range(len(work.bodies)))

    async def client(s: aiohttp.ClientSession) -> None:
        for i in pending:  # shared: each batch goes to one client
            await post_events(s, work.bodies[i], work.sizes[i])

    async def watch(s: aiohttp.ClientSession) -> float:
        while True:
            total = await board_total(s)
            now = time.perf_counter()
            samples.append((now, total))
            if abs(total - expected) < 0.5:
                return now
            if ingested.is_set() and now - ended > BOARD_TIMEOUT:
                raise BenchError(f"the board's total is {total:,.0f}, not {expected:,}")
            every = BOARD_POLL_AFTER_INGEST if ingested.is_set() else BOARD_POLL_DURING_INGEST
            await asyncio.sleep(every)

    async with session(dep.url, dep.key, CLIENTS) as s, session(dep.url, dep.key, 1) as board:
        started = time.perf_counter()
        ended = math.inf
        watcher = asyncio.create_task(watch(board))
        try:
            async with asyncio.timeout(INGEST_TIMEOUT):
                await asyncio.gather(*(client(s) for _ in range(CLIENTS)))
            ended = time.perf_counter()
            ingested.set()
            complete = await watcher
        finally:
            watcher.cancel()
    share = cpu.stop()
    after = next((total for when, total in samples if when >= ended), expected)
    return Throughput(
        events=work.events,
        ingest_s=round(ended - started, 3),
        ingest_per_s=round(work.events / (ended - started)),
        complete_s=round(complete - started, 3),
        e2e_per_s=round(work.events / (complete - started)),
        on_board_at_ingest_end_pct=round(100 * (after - base) / work.points, 1),
        cpu=share,
        cpu_others=cpu.others,
        cpu_us_per_event=round(deployment_cpu(share) * (complete - started) / work.events, 1),
        checkpoints=cpu.checkpoints,
    )


def deployment_cpu(share: dict[str, float]) -> float:
    """µs of CPU per second (from % of a core) of the deployment's own processes."""
    return 1e4 * sum(pct for role, pct in share.items() if role not in ("bench", "other"))


class LatencyRun:
    """Background batches on a fixed schedule, probes every 100 ms, and a poller of the probe
    player's standing, all open loop on one event loop."""

    def __init__(
        self, background: Workload, probes: Sequence[bytes], subject: str, seconds: float
    ) -> None:
        self.background = background
        self.probes = probes
        self.subject = subject
        self.seconds = seconds
        self.sent = [math.nan] * len(probes)  # probe k+1 at index k (probe 0 was the set-up's)
        self.acked = [math.nan] * len(probes)
        self.seen = [math.inf] * len(probes)
        self.poll_starts: list[float] = []
        self.late = 0.0  # how far a send fell behind its schedule
        self.last_send = math.nan
        self.last_ack = 0.0
        self.t0 = time.perf_counter() + 0.05
        self.wall = time.time() - time.perf_counter()  # this clock's reading -> UTC seconds
        self.tasks: list[asyncio.Task[None]] = []  # every POST, to cancel on the way out

    async def post(self, s: aiohttp.ClientSession, body: bytes, size: int) -> None:
        await post_events(s, body, size)
        self.last_ack = max(self.last_ack, time.perf_counter())

    async def post_probe(self, s: aiohttp.ClientSession, k: int) -> None:
        self.sent[k] = time.perf_counter()
        await self.post(s, self.probes[k], 1)
        self.acked[k] = time.perf_counter()

    def start(self, post: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(post)
        self.tasks.append(task)
        return task

    async def stop(self) -> None:
        """Cancel what is still in flight (after an error or Ctrl-C) before the sessions go."""
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    async def pace(self, s: aiohttp.ClientSession) -> None:
        """Background batches on schedule, whether or not earlier ones have returned."""
        posts = []
        for i, body in enumerate(self.background.bodies):
            due = self.t0 + i * TICK
            await sleep_until(due)
            self.late = max(self.late, time.perf_counter() - due)
            posts.append(self.start(self.post(s, body, self.background.sizes[i])))
        self.last_send = time.perf_counter()
        await asyncio.gather(*posts)

    async def probe(self, s: aiohttp.ClientSession) -> None:
        posts = []
        for k in range(len(self.probes)):
            await sleep_until(self.t0 + TICK / 2 + k * PROBE_EVERY)
            posts.append(self.start(self.post_probe(s, k)))
        await asyncio.gather(*posts)

    async def watch(self, s: aiohttp.ClientSession) -> None:
        shown = 0  # probes seen on the board
        deadline = self.t0 + self.seconds + INGEST_TIMEOUT + BOARD_TIMEOUT
        while shown < len(self.probes) and time.perf_counter() < deadline:
            began = time.perf_counter()
            self.poll_starts.append(began)
            reached = round(await probe_score(s, self.subject)) - 1  # less the set-up's probe
            now = time.perf_counter()
            while shown < min(reached, len(self.probes)):
                self.seen[shown] = now
                shown += 1
            await sleep_until(began + POLL_EVERY)


async def latency(
    dep: Deployment,
    background: Workload,
    probes: Sequence[bytes],
    subject: str,
    base: int,
    rate: float,
    seconds: float,
) -> Latency:
    cpu = CpuUse(dep)
    run = LatencyRun(background, probes, subject, seconds)
    async with (
        session(dep.url, dep.key, 64) as s,
        session(dep.url, dep.key, 4) as p,
        session(dep.url, dep.key, 1) as w,
    ):
        watcher = asyncio.create_task(run.watch(w))
        try:
            async with asyncio.timeout(seconds + INGEST_TIMEOUT):
                await asyncio.gather(run.pace(s), run.probe(p))
            expected = base + background.points + len(probes)
            drained = await wait_for_total(w, expected, BOARD_TIMEOUT, BOARD_POLL_AFTER_INGEST)
            await asyncio.wait_for(watcher, BOARD_TIMEOUT)
            phases = await probe_phases(w, subject, run)
        finally:
            watcher.cancel()
            await run.stop()
    share = cpu.stop()

    waits = sorted(v - t for v, t in zip(run.seen, run.sent, strict=True))
    ingest = sorted(a - t for a, t in zip(run.acked, run.sent, strict=True))
    periods = [b - a for a, b in itertools.pairwise(run.poll_starts)]
    events = background.events + len(probes)
    return Latency(
        target_rate=rate,
        seconds=seconds,
        events=events,
        sent_per_s=round(events / (run.last_send - run.t0 + TICK)),
        acknowledged_per_s=round(events / (run.last_ack - run.t0)),
        sender_max_late_ms=round(1000 * run.late, 1),
        probes=len(probes),
        probes_seen=sum(1 for v in run.seen if v < math.inf),
        p50_ms=round(1000 * percentile(waits, 50), 1),
        p99_ms=round(1000 * percentile(waits, 99), 1),
        max_ms=round(1000 * waits[-1], 1),
        probe_ingest_p50_ms=round(1000 * percentile(ingest, 50), 1),
        probe_ingest_p99_ms=round(1000 * percentile(ingest, 99), 1),
        poll_period_ms=round(1000 * statistics.median(periods), 1) if periods else math.nan,
        drained_s=round(drained - run.last_send, 3),
        cpu=share,
        cpu_others=cpu.others,
        phases=phases,
        checkpoints=cpu.checkpoints,
        probe_series=[
            (round(t - run.t0, 3), round(1000 * (v - t), 1))
            for t, v in zip(run.sent, run.seen, strict=True)
        ],
    )


# A probe's way, split by the server's timestamps: the event's received_at (taken as the
# API handles the request, before the log's commit) and its ledger entry's recorded_at (taken
# by the scoring step that scored it, after reading its events, before evaluating them).
PHASES = (
    "send → received",
    "received → acknowledged",
    "received → scoring step",
    "scoring step → seen on board",
)


async def _pages(s: aiohttp.ClientSession, path: str, params: dict[str, str]) -> list[Any]:
    items: list[Any] = []
    cursor = None
    while True:
        page = await get_json(s, path, {**params, **({"cursor": cursor} if cursor else {})})
        items += page["items"]
        cursor = page.get("next_cursor")
        if not cursor:
            return items


async def probe_phases(
    s: aiohttp.ClientSession, subject: str, run: LatencyRun
) -> dict[str, tuple[float, float]]:
    """p50 and p99 (ms) of each of PHASES over the probes seen on the board."""
    keys = {f"probe-{k + 1}": k for k in range(len(run.probes))}
    received: dict[int, float] = {}
    scored: dict[int, float] = {}
    deadline = time.perf_counter() + BOARD_TIMEOUT
    while len(scored) < len(keys) and time.perf_counter() < deadline:
        # The player's events are listed once the log's player index covers them.
        events = await _pages(s, "/v1/events", {"player": subject, "limit": "1000"})
        by_id = {e["event_id"]: keys[e["id"]] for e in events if e["id"] in keys}
        for e in events:
            if e["id"] in keys:
                received[keys[e["id"]]] = datetime.fromisoformat(e["received_at"]).timestamp()
        ledger = await _pages(s, f"/v1/players/{subject}/ledger", {"limit": "1000"})
        for entry in ledger:
            k = by_id.get(entry["event_id"])
            if k is not None:
                scored[k] = datetime.fromisoformat(entry["recorded_at"]).timestamp()
        if len(scored) < len(keys):
            await asyncio.sleep(0.5)
    spans: dict[str, list[float]] = {name: [] for name in PHASES}
    for k, at in scored.items():
        if k not in received or run.seen[k] == math.inf:
            continue
        sent, acked, seen = (run.wall + x for x in (run.sent[k], run.acked[k], run.seen[k]))
        for name, span in zip(
            PHASES,
            (received[k] - sent, acked - received[k], at - received[k], seen - at),
            strict=True,
        ):
            spans[name].append(1000 * span)
    return {
        name: (round(percentile(sorted(v), 50), 1), round(percentile(sorted(v), 99), 1))
        for name, v in spans.items()
        if v
    }


@dataclass(slots=True)
class Plan:
    """Everything sent to a deployment, built once: both get the same events."""

    warm: Workload
    rounds: list[Workload]  # the throughput case's, each of new events
    background: Workload
    probes: list[bytes]


def make_plan(args: argparse.Namespace) -> Plan:
    rng = random.Random(args.seed)
    # A recent, fixed time: within every window and clock-skew check.
    when = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    occurred_at = when.strftime("%Y-%m-%dT%H:%M:%SZ")
    per_tick = max(1, min(BATCH, round(args.rate * TICK)))
    ticks = max(1, round(args.seconds / TICK))
    return Plan(
        warm=build_warm_up(rng, occurred_at),
        rounds=[
            build_workload(f"tp{r}", args.events, BATCH, rng, occurred_at)
            for r in range(args.rounds)
        ],
        background=build_workload("bg", per_tick * ticks, per_tick, rng, occurred_at),
        probes=[
            probe_body(k, occurred_at) for k in range(max(1, round(args.seconds / PROBE_EVERY)) + 1)
        ],
    )


def measure(dep: Deployment, plan: Plan, args: argparse.Namespace) -> Result:
    started = time.perf_counter()
    publish(dep.url, dep.key)
    time.sleep(1.0)  # the rule set reaches every process
    subject, base = asyncio.run(set_up(dep, plan.warm, plan.probes[0]))
    setup_s = time.perf_counter() - started
    events = plan.rounds[0].events
    print(f"  set up in {setup_s:.1f} s; throughput, {events:,} events...", flush=True)
    rounds = [asyncio.run(throughput(dep, plan.rounds[0], base))]
    base += plan.rounds[0].points
    report_round(rounds[-1])
    # The latency case after the first round, as before there were rounds: on a log of the
    # same size (the embedded mode slows as its log grows).
    print(f"  latency at {args.rate:,.0f} events/s for {args.seconds:g} s...", flush=True)
    lat = asyncio.run(
        latency(
            dep,
            plan.background,
            plan.probes[1:],
            subject,
            base,
            args.rate,
            args.seconds,
        )
    )
    print(f"  p50 {lat.p50_ms} ms, p99 {lat.p99_ms} ms, max {lat.max_ms} ms", flush=True)
    base += plan.background.points + len(plan.probes[1:])  # what the latency case sent
    for work in plan.rounds[1:]:
        rounds.append(asyncio.run(throughput(dep, work, base)))
        base += work.points
        report_round(rounds[-1])
    return Result(dep.name, round(setup_s, 2), median_round(rounds), lat, rounds)


def report_round(tp: Throughput) -> None:
    line = f"  ingest {tp.ingest_per_s:,} events/s, end to end {tp.e2e_per_s:,} events/s"
    print(line, flush=True)


def median_round(rounds: Sequence[Throughput]) -> Throughput:
    """The round of the median end-to-end rate (the lower middle one of an even count)."""
    ranked = sorted(rounds, key=lambda tp: tp.e2e_per_s)
    return ranked[(len(ranked) - 1) // 2]


# --- report ---------------------------------------------------------------------------------


def table(results: Sequence[Result]) -> str:
    def row(label: str, cells: Sequence[str]) -> list[str]:
        return [label, *cells]

    rows = [row("", [r.deployment for r in results])]
    t = [r.throughput for r in results]
    la = [r.latency for r in results]
    rows += [
        row(
            f"throughput: {t[0].events:,} events, median of {len(results[0].rounds)}",
            ["" for _ in results],
        ),
        row("  ingest events/s", [f"{x.ingest_per_s:,}" for x in t]),
        row("  end-to-end events/s", [f"{x.e2e_per_s:,}" for x in t]),
        row(
            "  each round, end to end",
            [" / ".join(f"{x.e2e_per_s:,}" for x in r.rounds) for r in results],
        ),
        row("  ingest / board complete (s)", [f"{x.ingest_s:.2f} / {x.complete_s:.2f}" for x in t]),
        row(
            "  on the board when ingest ended", [f"{x.on_board_at_ingest_end_pct:.0f}%" for x in t]
        ),
        row("  CPU µs per event (deployment)", [f"{x.cpu_us_per_event:,.0f}" for x in t]),
        row(
            "  PostgreSQL checkpoints, each round",
            [" / ".join(_count(x.checkpoints) for x in r.rounds) for r in results],
        ),
        row(f"latency: {la[0].target_rate:,.0f} events/s", ["" for _ in results]),
        row(
            "  sent / acknowledged events/s",
            [f"{x.sent_per_s:,} / {x.acknowledged_per_s:,}" for x in la],
        ),
        row(
            "  event→board p50 / p99 / max ms",
            [f"{x.p50_ms} / {x.p99_ms} / {x.max_ms}" for x in la],
        ),
        row(
            "  probe POST p50 / p99 ms",
            [f"{x.probe_ingest_p50_ms} / {x.probe_ingest_p99_ms}" for x in la],
        ),
        row(
            "  probes seen, poll period ms",
            [f"{x.probes_seen}/{x.probes}, {x.poll_period_ms}" for x in la],
        ),
        row("  drained after last send (s)", [f"{x.drained_s:.2f}" for x in la]),
        row("  PostgreSQL checkpoints", [_count(x.checkpoints) for x in la]),
        row("  a probe's phases, p50 / p99 ms:", ["" for _ in results]),
        *[
            row(
                f"    {name}",
                [
                    f"{x.phases[name][0]} / {x.phases[name][1]}" if name in x.phases else "-"
                    for x in la
                ],
            )
            for name in PHASES
        ],
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _count(value: int | None) -> str:
    return "-" if value is None else str(value)


def verdicts(results: Sequence[Result]) -> list[str]:
    out = []
    for r in results:
        if r.deployment == "scale-out":
            e2e = r.throughput.e2e_per_s
            status = "MET" if e2e >= TARGET_E2E_PER_S else "NOT MET"
            out.append(
                f"scale-out ≥{TARGET_E2E_PER_S:,} events/s end to end: {status} "
                f"({e2e:,}/s, the median of {len(r.rounds)} rounds)"
            )
        lat = r.latency
        status = "MET" if lat.p99_ms < TARGET_P99_MS else "NOT MET"
        out.append(
            f"{r.deployment}: event-to-leaderboard p99 <{TARGET_P99_MS:.0f} ms at "
            f"{lat.target_rate:,.0f} events/s: {status} ({lat.p99_ms} ms)"
        )
    return out


def report(args: argparse.Namespace, about: dict[str, Any], results: list[Result]) -> None:
    print()
    print(table(results))
    for r in results:
        print(f"CPU, % of a core ({r.deployment}):")
        for case, share, others in (
            ("throughput (median round)", r.throughput.cpu, r.throughput.cpu_others),
            ("latency", r.latency.cpu, r.latency.cpu_others),
        ):
            print(f"  {case}: {cpu_text(share)} (other: {cpu_text(others) or '-'})")
            if case == "latency" and share.get("other", 0) > NOISY_PCT:
                print(f"  warning: other processes used {share['other']:.0f}% during {case}")
        for number, tp in enumerate(r.rounds, 1):
            if tp.cpu.get("other", 0) > NOISY_PCT:
                print(f"  warning: other processes used {tp.cpu['other']:.0f}% in round {number}")
    print("note: a probe's latency includes up to one poll period")
    for line in verdicts(results):
        print(line)
    for r in results:
        if r.notable_log_lines:
            print(f"{r.deployment}: {r.notable_log_lines} warning/error lines in the logs, e.g.:")
            for line in r.log_excerpt[:10]:
                print(f"  {line[:300]}")
    if args.json is None:
        return
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    document = {
        "machine": about,
        "settings": {k: v for k, v in settings.items() if k != "json"},
        "targets": {"scale_out_e2e_per_s": TARGET_E2E_PER_S, "p99_ms": TARGET_P99_MS},
        "results": [asdict(r) for r in results],
    }
    save_json(document, args.json)


# --- command --------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="End to end: HTTP ingest → scored → on the leaderboard, embedded and "
        "scale-out side by side.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--events", type=int, default=60_000, help="events in the throughput case")
    parser.add_argument(
        "--rounds", type=int, default=3, help="throughput rounds (each of --events new events)"
    )
    parser.add_argument("--rate", type=float, default=5000, help="events/s in the latency case")
    parser.add_argument("--seconds", type=float, default=15.0, help="length of the latency case")
    parser.add_argument(
        "--only", choices=("embedded", "scale-out"), default=None, help="one deployment"
    )
    parser.add_argument("--seed", type=int, default=1, help="workload random seed")
    parser.add_argument(
        "--data-parent", type=Path, default=None, help="where to make the temporary dirs"
    )
    parser.add_argument("--keep-data", action="store_true", help="keep the data dirs and logs")
    parser.add_argument("--json", type=Path, default=None, help="also write results here ('-')")
    args = parser.parse_args(argv)
    if args.events < 1 or args.rate <= 0 or not 0 < args.seconds <= 600 or args.rounds < 1:
        parser.error("--events ≥ 1, --rounds ≥ 1, --rate > 0 and 0 < --seconds ≤ 600")
    return args


def run(args: argparse.Namespace) -> list[Result]:
    plan = make_plan(args)
    deployments = {"embedded": embedded, "scale-out": scale_out}
    results = []
    for name, deploy in deployments.items():
        if args.only not in (None, name):
            continue
        print(f"{name}: starting...", flush=True)
        dep = None
        try:
            with deploy(args.data_parent, args.keep_data) as dep:
                print(f"  {dep.url}, PIDs {dep.roles}", flush=True)
                result = measure(dep, plan, args)
        except BenchError:
            if dep is not None:  # it started: what its logs said
                print(f"{name}: warning/error lines in the logs:", *dep.notable[-30:], sep="\n")
                print(f"{name}: the logs' last lines:", *dep.tails, sep="\n")
            raise
        result.notable_log_lines = len(dep.notable)
        result.log_excerpt = dep.notable[:50]
        results.append(result)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    stop_on_sigterm()
    about = machine()
    pinned_code(about)
    print(
        f"{about['date']}  {about['cpus']} CPUs ({about['cpu']})  Python {about['python']}  "
        f"plaudit {about['revision'] or '?'}  speed {about['speed_us']} µs (sum(range(1000)))"
    )
    print(f"code under test: {about['code']}")
    print("note: the bench, the servers and the services share this machine's cores")
    warn_if_busy()
    try:
        results = run(args)
    except BenchError as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bench: interrupted (the processes were stopped)", file=sys.stderr)
        return 130
    about["speed_us_after"] = python_speed_us()
    print(f"speed after the run: {about['speed_us_after']} µs")
    report(args, about, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
