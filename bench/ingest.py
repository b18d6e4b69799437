"""Ingest benchmark: POST /v1/events against a real `plaudit serve` it starts and stops itself.

For each batch size it pre-builds the request bodies (so the client is not the bottleneck),
then C async httpx clients post them back to back for a bounded time. 5% of each batch are
re-sent ids of events the same client had sent before (duplicates); actors are drawn from
~1,000 per case, new to the server, so identity creation and mapping are both exercised.

    .venv/bin/python bench/ingest.py [--seconds 15] [--clients 4] [--json bench/results/x.json]

Every response is checked (accepted and duplicates exactly as expected, no rejection), and
the events table is counted at the end of each case. Only the server started here is
stopped, by its PID.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import random
import shlex
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import timeit
from array import array
from collections.abc import Iterator, Mapping, Sequence
from contextlib import closing, contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson

TARGET_EVENTS_PER_S = 30_000  # accepted events/s with batches of 1,000 (the goal to compare with)
EVENT_TYPES = ("lesson.completed", "quiz.passed", "deal.won")
COURSES = ("onboarding", "security-101", "negotiation", "product-deep-dive", "gdpr")


class BenchError(Exception):
    """A failure that ends the benchmark with one line on stderr."""


@dataclass(frozen=True, slots=True)
class Batch:
    body: bytes
    size: int
    duplicates: frozenset[int]  # indexes in the batch that re-send an earlier event


@dataclass(slots=True)
class CaseResult:
    batch_size: int
    clients: int
    seconds: float
    requests: int
    events: int
    accepted: int
    duplicates: int
    rejected: int
    requests_per_s: float
    accepted_per_s: float
    events_per_s: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    server_cpu_pct: float | None
    client_cpu_pct: float
    other_cpu_pct: float | None  # everything else on the machine: should be near 0
    stored_in_db: int
    ran_out_of_batches: bool
    profile: str | None = None


@dataclass(slots=True)
class Tally:
    requests: int = 0
    events: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    latencies: list[float] = field(default_factory=list)
    exhausted: bool = False


# --- workload -------------------------------------------------------------------------------


class EventMaker:
    """Deterministic events per (client, n), so a duplicate re-sends exactly the same event."""

    def __init__(self, tag: str, source: str, client: int, actors: int, seed: int) -> None:
        self.tag = tag
        self.source = source
        self.client = client
        self.actors = actors
        self.rng = random.Random(seed * 1_000_003 + client)
        self.actor_of = array("I")  # actor index of event n
        self.base = datetime.now(UTC) - timedelta(days=1)

    def fresh(self) -> dict[str, Any]:
        n = len(self.actor_of)
        self.actor_of.append(self.rng.randrange(self.actors))
        return self.event(n)

    def event(self, n: int) -> dict[str, Any]:
        return {
            "id": f"{self.tag}-c{self.client}-{n}",
            "source": self.source,
            "type": EVENT_TYPES[n % len(EVENT_TYPES)],
            "actor": f"user-{self.actor_of[n]:05d}",
            "occurred_at": (self.base + timedelta(milliseconds=n)).isoformat(),
            "properties": {"course": COURSES[n % len(COURSES)], "score": n % 101},
        }


def build_batches(
    maker: EventMaker, batch_size: int, count: int, duplicate_share: float
) -> list[Batch]:
    """``count`` bodies; from the second on, ``duplicate_share`` of each re-sends older ids."""
    batches = []
    per_batch = round(batch_size * duplicate_share)
    for _ in range(count):
        sent_before = len(maker.actor_of)
        dups = min(per_batch, sent_before)
        events = [maker.fresh() for _ in range(batch_size - dups)]
        events += [maker.event(n) for n in maker.rng.sample(range(sent_before), dups)]
        order = list(range(batch_size))
        maker.rng.shuffle(order)
        body = orjson.dumps([events[i] for i in order])
        # Position pos holds events[order[pos]]; the last ``dups`` of ``events`` are re-sends.
        duplicate_at = frozenset(pos for pos, i in enumerate(order) if i >= batch_size - dups)
        batches.append(Batch(body, batch_size, duplicate_at))
    return batches


# --- the server -----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def server_env(data_dir: Path, settings: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a bench's server: only our settings (a PLAUDIT_DATABASE_URL in the
    caller's shell must not redirect us), plus ``settings`` (PLAUDIT_* variables)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLAUDIT_")}
    env["PLAUDIT_DATA_DIR"] = str(data_dir)
    env["PLAUDIT_LOG_LEVEL"] = "warning"
    # The load comes from one address and key: rate limits would measure themselves.
    for limit in ("PER_KEY", "PER_SOURCE", "PER_PLAYER"):
        env[f"PLAUDIT_RATE_LIMITS__{limit}"] = ""
    env.update(settings or {})
    if SOURCE:  # --src: this tree's plaudit shadows the installed (editable) one
        env["PYTHONPATH"] = os.pathsep.join([*SOURCE, *filter(None, [env.get("PYTHONPATH")])])
    return env


# A script to run instead of `python -m plaudit` (--entry), to A/B a patched server.
ENTRY: list[str] = ["-m", "plaudit"]
# A source tree to run the server from (--src), to pin the code under test.
SOURCE: list[str] = []


def plaudit_command(*args: str) -> list[str]:
    return [sys.executable, *ENTRY, *args]


def run_plaudit(data_dir: Path, *args: str) -> str:
    """One ``plaudit`` command on the data dir; its output, or BenchError."""
    done = subprocess.run(
        plaudit_command(*args),
        env=server_env(data_dir),
        cwd=data_dir,  # no stray .env from the caller's directory
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if done.returncode != 0:
        raise BenchError(f"plaudit {args[0]} failed: {done.stderr.strip()}")
    return done.stdout


def create_key(data_dir: Path, scope: str = "events:write") -> str:
    created = run_plaudit(data_dir, "keys", "create", "--name", "bench", "--scope", scope, "--json")
    key: str = json.loads(created)["key"]
    return key


@dataclass(slots=True)
class Server:
    process: subprocess.Popen[bytes]
    url: str
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_tail(self, lines: int = 20) -> str:
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])


def wait_ready(server: Server, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise BenchError(f"the server exited at start:\n{server.log_tail()}")
        try:
            if httpx.get(f"{server.url}/readyz", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise BenchError(f"the server was not ready within {timeout:.0f} s:\n{server.log_tail()}")


@contextmanager
def running_server(
    data_dir: Path, settings: Mapping[str, str] | None = None, ready_timeout: float = 30
) -> Iterator[Server]:
    """`plaudit serve` on a free port, ready; stopped (SIGTERM, then SIGKILL) by its PID on
    exit. ``settings``: PLAUDIT_* variables for it."""
    log_path = data_dir / "server.log"
    for attempt in range(3):  # the free port may be taken between our probe and its bind
        port = free_port()
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                plaudit_command("serve", "--host", "127.0.0.1", "--port", str(port)),
                env=server_env(data_dir, settings),
                cwd=data_dir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C here reaches us, and we stop it in order
            )
        server = Server(process, f"http://127.0.0.1:{port}", log_path)
        try:
            try:
                wait_ready(server, timeout=ready_timeout)
            except BenchError:
                if process.poll() is not None and attempt < 2:
                    continue
                raise
            yield server
            return
        finally:
            stop(process)
    raise BenchError("could not start the server")


def stop(process: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    if process.poll() is not None:
        return
    os.kill(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=grace)


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU of a process (all its threads), from /proc; None off Linux."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float | None:
    """CPU seconds all cores spent busy since boot (not idle, not waiting on I/O)."""
    try:
        first = Path("/proc/stat").read_text().splitlines()[0].split()
    except OSError:
        return None
    ticks = [int(v) for v in first[1:9]]  # user nice system idle iowait irq softirq steal
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def stored_events(data_dir: Path, source: str) -> int:
    database = f"file:{data_dir / 'plaudit.db'}?mode=ro"
    with closing(sqlite3.connect(database, uri=True)) as conn:
        row = conn.execute("SELECT count(*) FROM events WHERE source = ?", (source,)).fetchone()
    return int(row[0])


@contextmanager
def py_spy(pid: int, output: Path | None, seconds: float, extra: Sequence[str]) -> Iterator[None]:
    """Record the server with py-spy (raw collapsed stacks) while the block runs."""
    if output is None:
        yield
        return
    exe = shutil.which(
        "py-spy", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    )
    if exe is None:
        raise BenchError("--py-spy needs py-spy: .venv/bin/pip install py-spy")
    output.parent.mkdir(parents=True, exist_ok=True)
    command = [exe, "record", "--pid", str(pid), "--format", "raw", "--output", str(output)]
    command += ["--duration", str(math.ceil(seconds)), *extra]
    recorder = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        yield
    finally:
        try:
            _, errors = recorder.communicate(timeout=seconds + 30)
        except subprocess.TimeoutExpired:
            os.kill(recorder.pid, signal.SIGKILL)
            _, errors = recorder.communicate()
        if recorder.returncode != 0:
            print(f"py-spy failed: {errors.decode(errors='replace').strip()}", file=sys.stderr)


# --- the load -------------------------------------------------------------------------------


async def post(client: httpx.AsyncClient, batch: Batch, tally: Tally | None) -> None:
    started = time.perf_counter()
    response = await client.post("/v1/events", content=batch.body)
    elapsed = time.perf_counter() - started
    if response.status_code != 200:
        raise BenchError(f"POST /v1/events: {response.status_code} {response.text[:500]}")
    report = orjson.loads(response.content)
    duplicates = frozenset(r["index"] for r in report["results"] if r["status"] == "duplicate")
    if report["rejected"] or duplicates != batch.duplicates:
        raise BenchError(
            f"unexpected report: accepted={report['accepted']} duplicates={report['duplicates']} "
            f"rejected={report['rejected']}; expected {len(batch.duplicates)} duplicates, "
            f"no rejection; first results: {report['results'][:3]}"
        )
    if report["accepted"] + report["duplicates"] != batch.size:
        raise BenchError(f"counts do not add up to the batch size {batch.size}: {report}")
    if tally is not None:
        tally.requests += 1
        tally.events += batch.size
        tally.accepted += report["accepted"]
        tally.duplicates += report["duplicates"]
        tally.rejected += report["rejected"]
        tally.latencies.append(elapsed)


async def drive(
    client: httpx.AsyncClient, batches: Sequence[Batch], deadline: float, tally: Tally
) -> None:
    """Post one batch after another until the deadline (a request in flight completes)."""
    for batch in batches:
        if time.perf_counter() >= deadline:
            return
        await post(client, batch, tally)
    tally.exhausted = True


def http_client(url: str, key: str, connections: int) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    return httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=120.0)


async def warm_up(url: str, key: str, rounds: Sequence[Sequence[Batch]]) -> None:
    """Untimed: the server compiles its statements and fills its caches."""
    async with http_client(url, key, max(len(r) for r in rounds)) as client:
        for one_round in rounds:  # one batch per client, concurrently, like the real load
            await asyncio.gather(*(post(client, b, None) for b in one_round))


async def run_load(
    url: str, key: str, work: Sequence[Sequence[Batch]], seconds: float
) -> tuple[Tally, float]:
    async with http_client(url, key, len(work)) as client:
        started = time.perf_counter()
        deadline = started + seconds
        tallies = [Tally() for _ in work]
        await asyncio.gather(
            *(drive(client, w, deadline, t) for w, t in zip(work, tallies, strict=True))
        )
        elapsed = time.perf_counter() - started
    tally = Tally()
    for t in tallies:
        tally.requests += t.requests
        tally.events += t.events
        tally.accepted += t.accepted
        tally.duplicates += t.duplicates
        tally.rejected += t.rejected
        tally.latencies += t.latencies
        tally.exhausted |= t.exhausted
    return tally, elapsed


def percentile(sorted_values: Sequence[float], p: float) -> float:
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def run_case(
    server: Server, data_dir: Path, key: str, args: argparse.Namespace, batch_size: int
) -> CaseResult:
    source = f"bench-b{batch_size}"  # identities are per source: ~1,000 new players per case
    tag = f"b{batch_size}"
    per_client = math.ceil(args.max_rate * args.seconds / args.clients / batch_size) + 1
    print(
        f"batch {batch_size}: pre-building {per_client * args.clients} bodies...",
        end=" ",
        flush=True,
    )
    built = time.perf_counter()
    warmup, work = [], []
    for c in range(args.clients):
        warm = EventMaker(f"warm-{tag}", "bench-warmup", c, args.actors, args.seed)
        warmup.append(build_batches(warm, batch_size, args.warmup_batches, 0.0))
        maker = EventMaker(tag, source, c, args.actors, args.seed)
        work.append(build_batches(maker, batch_size, per_client, args.duplicates))
    print(f"{time.perf_counter() - built:.1f} s; running {args.seconds:g} s...", flush=True)
    # Clients take turns per round, so warm-up requests overlap like the real load.
    warm_rounds = [list(r) for r in zip(*warmup, strict=True)]

    profile = None if args.py_spy is None else args.py_spy / f"ingest-b{batch_size}.txt"
    if warm_rounds:
        asyncio.run(warm_up(server.url, key, warm_rounds))
    server_cpu = cpu_seconds(server.pid)
    client_cpu = time.process_time()
    busy = machine_busy_seconds()
    with py_spy(server.pid, profile, args.seconds, args.py_spy_arg):
        tally, elapsed = asyncio.run(run_load(server.url, key, work, args.seconds))
    client_used = time.process_time() - client_cpu
    server_after = cpu_seconds(server.pid)
    busy_after = machine_busy_seconds()
    server_used = None if server_cpu is None or server_after is None else server_after - server_cpu
    other_used = (
        None
        if busy is None or busy_after is None or server_used is None
        else max(0.0, busy_after - busy - server_used - client_used)
    )

    stored = stored_events(data_dir, source)
    if stored != tally.accepted:
        raise BenchError(f"{tally.accepted} events were accepted but {stored} are in the log")
    lat = sorted(tally.latencies)
    return CaseResult(
        batch_size=batch_size,
        clients=args.clients,
        seconds=round(elapsed, 3),
        requests=tally.requests,
        events=tally.events,
        accepted=tally.accepted,
        duplicates=tally.duplicates,
        rejected=tally.rejected,
        requests_per_s=round(tally.requests / elapsed, 1),
        accepted_per_s=round(tally.accepted / elapsed, 1),
        events_per_s=round(tally.events / elapsed, 1),
        p50_ms=round(percentile(lat, 50) * 1000, 2),
        p99_ms=round(percentile(lat, 99) * 1000, 2),
        max_ms=round(lat[-1] * 1000, 2) if lat else math.nan,
        server_cpu_pct=None if server_used is None else round(100 * server_used / elapsed, 1),
        client_cpu_pct=round(100 * client_used / elapsed, 1),
        other_cpu_pct=None if other_used is None else round(100 * other_used / elapsed, 1),
        stored_in_db=stored,
        ran_out_of_batches=tally.exhausted,
        profile=None if profile is None else str(profile),
    )


# --- report ---------------------------------------------------------------------------------


def code_under_test(data_dir: Path) -> str:
    """Where the server's ``plaudit`` package is imported from."""
    done = subprocess.run(
        [sys.executable, "-c", "import plaudit; print(plaudit.__file__)"],
        env=server_env(data_dir),
        cwd=data_dir,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return done.stdout.strip() or done.stderr.strip()


def source_revision() -> str | None:
    """The commit of the code under test, with "+dirty" when src/ has local changes.

    With --src, the tree's ``.revision`` file if it has one (see the README), else its path.
    """
    if SOURCE:
        marker = Path(SOURCE[0]) / ".revision"
        return marker.read_text().strip() if marker.exists() else f"src={SOURCE[0]}"
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            check=False,
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "src"],
            cwd=root,
            capture_output=True,
            text=True,
            check=False,
        )
    except OSError:
        return None
    if head.returncode != 0:
        return None
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def python_speed_us() -> float:
    """µs for ``sum(range(1000))`` on one core, best of 5 (~0.7 s): this machine's speed swings
    by 2 - 3x over hours (10 - 13 µs fast, 20 - 30 slow), and every figure with it, so each
    result carries the speed it was measured at. Compare runs of about the same speed."""
    best = min(timeit.repeat("sum(range(1000))", number=10_000, repeat=5))
    return round(best / 10_000 * 1e6, 1)


def machine() -> dict[str, Any]:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "cpu": model,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "revision": source_revision(),
        "speed_us": python_speed_us(),
    }


def table(results: Sequence[CaseResult]) -> str:
    head = (
        "batch",
        "clients",
        "secs",
        "requests",
        "req/s",
        "accepted ev/s",
        "total ev/s",
        "dup %",
        "p50 ms",
        "p99 ms",
        "server CPU",
        "client CPU",
        "other CPU",
    )
    rows = [head]
    for r in results:
        rows.append(
            (
                f"{r.batch_size:,}",
                str(r.clients),
                f"{r.seconds:.1f}",
                f"{r.requests:,}",
                f"{r.requests_per_s:,.1f}",
                f"{r.accepted_per_s:,.0f}",
                f"{r.events_per_s:,.0f}",
                f"{100 * r.duplicates / max(r.events, 1):.1f}",
                f"{r.p50_ms:,.1f}",
                f"{r.p99_ms:,.1f}",
                "?" if r.server_cpu_pct is None else f"{r.server_cpu_pct:.0f}%",
                f"{r.client_cpu_pct:.0f}%",
                "?" if r.other_cpu_pct is None else f"{r.other_cpu_pct:.0f}%",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = ["  ".join(cell.rjust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def verdict(results: Sequence[CaseResult]) -> str | None:
    big = [r for r in results if r.batch_size == 1000]
    if not big:
        return None
    rate = big[0].accepted_per_s
    status = "MET" if rate >= TARGET_EVENTS_PER_S else "NOT MET"
    return (
        f"target ≥{TARGET_EVENTS_PER_S:,} accepted events/s with batches of 1,000: {status} "
        f"({rate:,.0f}/s, {100 * rate / TARGET_EVENTS_PER_S:.0f}% of target)"
    )


# --- command --------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark POST /v1/events against a fresh `plaudit serve`.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--seconds", type=float, default=15.0, help="timed run per batch size")
    parser.add_argument("--clients", type=int, default=4, help="concurrent HTTP clients")
    parser.add_argument(
        "--batch-sizes",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[100, 1000],
        help="comma-separated batch sizes (at most 1,000)",
    )
    parser.add_argument("--duplicates", type=float, default=0.05, help="share re-sent per batch")
    parser.add_argument("--actors", type=int, default=1000, help="distinct actors per case")
    parser.add_argument("--warmup-batches", type=int, default=2, help="untimed, per client")
    parser.add_argument(
        "--max-rate",
        type=float,
        default=60_000,
        help="events/s the pre-built bodies can sustain for --seconds (memory: ~230 B/event)",
    )
    parser.add_argument("--seed", type=int, default=1, help="workload random seed")
    parser.add_argument(
        "--data-parent", type=Path, default=None, help="where to make the temporary data dir"
    )
    parser.add_argument("--keep-data", action="store_true", help="keep the data dir and log")
    parser.add_argument("--json", type=Path, default=None, help="also write results here ('-')")
    parser.add_argument(
        "--py-spy", type=Path, default=None, help="record a py-spy profile per case into DIR"
    )
    parser.add_argument(
        "--py-spy-arg",
        action="append",
        default=[],
        type=shlex.split,
        help="extra py-spy record arguments, e.g. --py-spy-arg=--gil (repeatable)",
    )
    parser.add_argument(
        "--entry",
        type=Path,
        default=None,
        help="a Python script to run in place of `python -m plaudit` (to compare a patch)",
    )
    parser.add_argument(
        "--src",
        type=Path,
        default=None,
        help="run the server from this source tree (holding plaudit/), e.g. a git archive",
    )
    args = parser.parse_args(argv)
    args.py_spy_arg = [a for group in args.py_spy_arg for a in group]
    if not all(1 <= b <= 1000 for b in args.batch_sizes):
        parser.error("--batch-sizes: each between 1 and 1000")
    if args.src is not None and not (args.src / "plaudit" / "__init__.py").exists():
        parser.error(f"--src {args.src}: no plaudit package there")
    if args.clients < 1 or args.seconds <= 0 or not 0 <= args.duplicates < 1:
        parser.error("--clients ≥ 1, --seconds > 0 and 0 ≤ --duplicates < 1")
    return args


def run(args: argparse.Namespace) -> list[CaseResult]:
    data_dir = Path(tempfile.mkdtemp(prefix="plaudit-bench-", dir=args.data_parent))
    try:
        key = create_key(data_dir)
        with running_server(data_dir) as server:
            print(f"server pid {server.pid} on {server.url}, data in {data_dir}")
            print(f"code under test: {code_under_test(data_dir)}")
            return [run_case(server, data_dir, key, args, size) for size in args.batch_sizes]
    finally:
        if args.keep_data:
            print(f"data kept in {data_dir}")
        else:
            shutil.rmtree(data_dir, ignore_errors=True)


def _terminate(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds through the finally blocks that stop the server


def stop_on_sigterm() -> None:
    """SIGTERM unwinds like Ctrl-C: every server a bench started is stopped by its PID."""
    signal.signal(signal.SIGTERM, _terminate)


def warn_if_busy() -> None:
    """Say so when the machine is busy before a bench starts: its figures would be low."""
    before = machine_busy_seconds()
    time.sleep(1.0)
    after = machine_busy_seconds()
    if before is not None and after is not None and after - before > 0.2:
        print(f"warning: the machine is busy before we start ({100 * (after - before):.0f}% CPU)")


def pinned_code(about: dict[str, Any]) -> None:
    """Where plaudit comes from (servers inherit PYTHONPATH); a tree pinned with ``git
    archive`` (PYTHONPATH=/tmp/pin-REV/src, see the README) names its revision in
    ``src/.revision``."""
    import plaudit

    source = Path(plaudit.__file__).resolve().parent.parent
    about["code"] = str(source)
    if (source / ".revision").exists():
        about["revision"] = (source / ".revision").read_text().strip()


def save_json(document: Any, path: Path) -> None:
    """``--json PATH``: the results as JSON, on stdout for ``-``."""
    text = json.dumps(document, indent=2, default=str)
    if str(path) == "-":
        print(text)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")
    print(f"results written to {path}")


def report(args: argparse.Namespace, about: dict[str, Any], results: list[CaseResult]) -> None:
    print()
    print(table(results))
    line = verdict(results)
    if line:
        print(line)
    for r in results:
        if r.other_cpu_pct is not None and r.other_cpu_pct > 10:
            print(
                f"warning: batch {r.batch_size}: other processes used {r.other_cpu_pct:.0f}% "
                "of a core during the run (of 100% per core); the figures are low"
            )
        if r.ran_out_of_batches:
            print(f"warning: batch {r.batch_size} used every pre-built body; raise --max-rate")
    if args.json is None:
        return
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    document = {
        "machine": about,
        "settings": {k: v for k, v in settings.items() if k != "json"},
        "target_accepted_per_s": TARGET_EVENTS_PER_S,
        "results": [asdict(r) for r in results],
    }
    save_json(document, args.json)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.entry is not None:
        ENTRY[:] = [str(args.entry.resolve())]
    if args.src is not None:
        SOURCE[:] = [str(args.src.resolve())]
    stop_on_sigterm()
    about = machine()
    print(
        f"{about['date']}  {about['cpus']} CPUs ({about['cpu']})  Python {about['python']}  "
        f"plaudit {about['revision'] or '?'}"
    )
    print("note: client and server share this machine's cores")
    warn_if_busy()
    try:
        results = run(args)
    except BenchError as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bench: interrupted (the server was stopped)", file=sys.stderr)
        return 130
    report(args, about, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
