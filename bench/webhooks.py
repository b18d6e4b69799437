"""Webhook benchmark: deliveries/s to a fast local receiver, and issuance latency (event in,
signed webhook out) at a steady 1,000 events/s, against a real `plaudit serve` (embedded mode).

    .venv/bin/python -m bench.webhooks [--json PATH]   # full run, about 4 min (--budget 290 s)
    .venv/bin/python -m bench.webhooks --quick         # smoke test, about 1 min

1. Backlog: N events whose rule awards points are ingested at once (batches of 1,000) with
   one subscription to points.awarded; then N/4 events with four subscriptions (fan-out: as
   many deliveries, four a message). Deliveries/s over the steady part (10th to 90th
   percentile of arrivals) and the time to drain (estimated when the wait runs out).
2. Latency: events at a steady rate (batches of 50 every 50 ms) for 30 s, one subscription;
   per event, from its POST being sent (and returned) to its webhook arriving, split into the
   scoring lag (until the scoring cursor passed the event, polled in the SQLite file every
   10 ms) and dispatch (from there to the arrival).

The receiver is its own process (asyncio on uvloop) and answers 200 at once; it records each
request's arrival time (wall clock, as the bench's send times: one machine, one clock).
Every message is matched to its event by ``data.event_id``; a sample of signatures is checked
with ``standardwebhooks``. Each case has its own data dir and server, stopped by PID; every
wait is bounded, and the whole run stops within ``--budget`` seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import multiprocessing
import os
import random
import re
import shutil
import sqlite3
import sys
import tempfile
import threading
import time
from bisect import bisect_left
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, cast

import httpx
import orjson
from standardwebhooks.webhooks import Webhook as StandardWebhook
from standardwebhooks.webhooks import WebhookVerificationError

from bench.ingest import (
    BenchError,
    Server,
    cpu_seconds,
    create_key,
    machine,
    machine_busy_seconds,
    percentile,
    pinned_code,
    save_json,
    stop_on_sigterm,
    warn_if_busy,
)
from bench.ingest import running_server as running_server_of_ingest

HOST = "127.0.0.1"
_LOOPBACK = {"PLAUDIT_WEBHOOKS__ALLOW_LOOPBACK": "true"}
TARGET_P99_MS = 500.0  # issuance latency, event sent to webhook arrived, embedded mode
RULESET = """\
currencies: [xp]
rules:
  - id: lesson
    on: lesson.completed
    award: {xp: 10}
"""  # one points.awarded message per event, nothing else
NOISY_PCT = 10  # other processes' CPU (% of a core) above which a case is flagged
SIGNATURES_CHECKED = 500  # per case, at random
JSON = {"Content-Type": "application/json"}


class Budget:
    """The run's deadline: every wait takes the smaller of its own bound and what is left."""

    def __init__(self, seconds: float) -> None:
        self.ends = time.monotonic() + seconds

    def left(self, reserve: float = 0.0) -> float:
        return max(0.0, self.ends - time.monotonic() - reserve)


# --- the receiver (its own process) ---------------------------------------------------------

_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*([0-9]+)", re.IGNORECASE)
_OK = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-type: text/plain\r\n\r\nok"


class Inbox:
    """What arrived: (wall-clock time, request head, body), kept raw until taken."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.records: list[tuple[float, bytes, bytes]] = []
        self.taken = 0

    def answer(self, at: float, head: bytes, body: bytes) -> bytes:
        first = head.split(b"\r\n", 1)[0].split(b" ")
        target = first[1] if len(first) > 1 else b""
        if not target.startswith(b"/_bench/"):
            self.records.append((at, head, body))
            return _OK
        text = str(len(self.records)) if target == b"/_bench/count" else str(self.take())
        data = text.encode()
        return b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(data), data)

    def take(self) -> Path:
        """Write what arrived to a file and start again (a pause between cases only)."""
        self.taken += 1
        path = self.out_dir / f"received-{self.taken}.jsonl"
        with path.open("wb") as out:
            for at, head, body in self.records:
                out.write(orjson.dumps([at, head.decode("latin-1"), body.decode()]) + b"\n")
        self.records = []
        return path


class _Connection(asyncio.Protocol):
    """HTTP/1.1 just enough for our sender: a head, a content-length body, answer 200."""

    def __init__(self, inbox: Inbox) -> None:
        self.inbox = inbox
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            head = bytes(self.buffer[:end])
            length = _LENGTH.search(head)
            total = end + 4 + (int(length[1]) if length else 0)
            if len(self.buffer) < total:
                return
            at = time.time()
            body = bytes(self.buffer[end + 4 : total])
            del self.buffer[:total]
            assert self.transport is not None
            self.transport.write(self.inbox.answer(at, head, body))


def receiver_main(conn: Connection, out_dir: str) -> None:
    """The receiver process: listen on a free port, send it back, serve until terminated."""
    import uvloop

    async def serve() -> None:
        inbox = Inbox(Path(out_dir))
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: _Connection(inbox), HOST, 0, backlog=4096)
        conn.send(server.sockets[0].getsockname()[1])
        await asyncio.Future()  # until SIGTERM

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(serve())


@dataclass(frozen=True, slots=True)
class Arrival:
    at: float  # wall clock, seconds
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes
    message: dict[str, Any]


class Receiver:
    """The receiver process, driven from here: count, take what arrived, stop (by PID)."""

    def __init__(self, out_dir: Path) -> None:
        self.client: httpx.Client | None = None
        context = multiprocessing.get_context("spawn")  # not a fork of a process with threads
        parent, child = context.Pipe()
        self.process = context.Process(
            target=receiver_main, args=(child, str(out_dir)), name="bench-receiver", daemon=True
        )
        self.process.start()
        if not parent.poll(30):
            self.stop()
            raise BenchError("the receiver did not start within 30 s")
        self.port: int = parent.recv()
        self.client = httpx.Client(base_url=f"http://{HOST}:{self.port}", timeout=60)

    @property
    def pid(self) -> int:
        assert self.process.pid is not None
        return self.process.pid

    def url(self, path: str) -> str:
        return f"http://{HOST}:{self.port}{path}"

    def ask(self, what: str) -> str:
        assert self.client is not None
        return self.client.get(f"/_bench/{what}").text

    def count(self) -> int:
        return int(self.ask("count"))

    def take(self) -> list[Arrival]:
        """What arrived since the last take, parsed (a pause of the receiver, between cases)."""
        path = Path(self.ask("take"))
        arrivals = []
        with path.open("rb") as lines:
            for line in lines:
                at, head, body = orjson.loads(line)
                headers = {}
                for row in head.split("\r\n")[1:]:
                    name, _, value = row.partition(":")
                    headers[name.strip().lower()] = value.strip()
                data = body.encode()
                arrivals.append(Arrival(at, head.split(" ")[1], headers, data, orjson.loads(data)))
        path.unlink()
        return arrivals

    def wait_for(self, count: int, seconds: float) -> tuple[int, bool]:
        """Poll until ``count`` requests arrived or ``seconds`` passed: (arrived, all came)."""
        deadline = time.monotonic() + seconds
        arrived = self.count()
        while arrived < count and time.monotonic() < deadline:
            time.sleep(0.05)
            arrived = self.count()
        return arrived, arrived >= count

    def stop(self) -> None:
        if self.client is not None:
            self.client.close()
        if self.process.is_alive():
            self.process.terminate()  # SIGTERM to its PID
            self.process.join(5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(5)


# --- the server -----------------------------------------------------------------------------


@contextmanager
def running_server(
    data_dir: Path, what_if: Sequence[str] = ()
) -> Iterator[tuple[Server, httpx.Client]]:
    """`plaudit serve` on a fresh data dir and a free port, with an admin client; stopped by
    its PID on the way out. ``what_if``: SQL run on the migrated file before it starts."""
    key = create_key(data_dir, "admin")
    if what_if:
        with closing(sqlite3.connect(data_dir / "plaudit.db")) as conn, conn:
            for statement in what_if:
                conn.execute(statement)
    # The receiver is http://127.0.0.1.
    with running_server_of_ingest(data_dir, _LOOPBACK, ready_timeout=60) as server:
        headers = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=server.url, headers=headers, timeout=60) as client:
            yield server, client


def checked(response: httpx.Response, status: int = 201) -> dict[str, Any]:
    if response.status_code != status:
        raise BenchError(f"{response.request.url.path}: {response.status_code} {response.text}")
    body: dict[str, Any] = response.json()
    return body


def prepare(
    client: httpx.Client, receiver: Receiver, subscriptions: int, in_flight: int | None
) -> dict[str, str]:
    """Publish the rule set and subscribe ``subscriptions`` endpoints: their secrets by path."""
    draft = checked(client.post("/v1/rulesets", json={"name": "bench", "source": RULESET}))
    checked(client.post(f"/v1/rulesets/{draft['id']}/publish", json={"note": "bench"}))
    secrets = {}
    for n in range(subscriptions):
        path = f"/hook/{n}"
        fields: dict[str, Any] = {"url": receiver.url(path), "event_types": ["points.awarded"]}
        if in_flight is not None:
            fields["max_in_flight"] = in_flight
        secrets[path] = checked(client.post("/v1/webhooks", json=fields))["secret"]
    return secrets


# --- measuring ------------------------------------------------------------------------------


class CursorWatch:
    """Polls the scoring and fan-out cursors in the SQLite file (read-only, every 10 ms), to
    know when each event was scored and committed, and when the outbox was fanned out."""

    def __init__(self, db: Path, every: float = 0.01) -> None:
        self.db = db
        self.every = every
        self.scoring: list[tuple[int, float]] = []  # (position, first seen at), increasing
        self.fanned: list[tuple[int, float]] = []  # (outbox seq, first seen at)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cursor-watch", daemon=True)

    def __enter__(self) -> CursorWatch:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        query = "SELECT name, position FROM cursors WHERE name IN ('scoring', 'webhooks')"
        with closing(sqlite3.connect(f"file:{self.db}?mode=ro", uri=True)) as conn:
            while not self._stop.wait(self.every):
                found = dict(conn.execute(query).fetchall())
                at = time.time()
                for name, seen in (("scoring", self.scoring), ("webhooks", self.fanned)):
                    position = int(found.get(name, 0))
                    if not seen or position > seen[-1][0]:
                        seen.append((position, at))

    @staticmethod
    def reached(seen: Sequence[tuple[int, float]], position: int) -> float | None:
        """When the cursor was first seen at or past ``position``."""
        i = bisect_left(seen, (position, -math.inf))
        return seen[i][1] if i < len(seen) else None


class CpuWatch:
    """CPU % (of one core) of the server, the receiver, this bench, and everything else."""

    def __init__(self, server: int, receiver: int) -> None:
        self.pids = {"server": server, "receiver": receiver, "bench": os.getpid()}
        self.shares: dict[str, float] = {}

    def __enter__(self) -> CpuWatch:
        self._before = {k: cpu_seconds(p) for k, p in self.pids.items()}
        self._busy = machine_busy_seconds()
        self._started = time.monotonic()
        return self

    def __exit__(self, *_: object) -> None:
        elapsed = time.monotonic() - self._started
        busy = machine_busy_seconds()
        used = {}
        for k, pid in self.pids.items():
            after, before = cpu_seconds(pid), self._before[k]
            used[k] = 0.0 if after is None or before is None else after - before
        self.shares = {f"{k}_cpu_pct": round(100 * v / elapsed) for k, v in used.items()}
        if busy is not None and self._busy is not None:
            other = max(0.0, busy - self._busy - sum(used.values()))
            self.shares["other_cpu_pct"] = round(100 * other / elapsed)


def event_body(tag: str, source: str, n: int, actors: int, base: datetime) -> dict[str, Any]:
    return {
        "id": f"{tag}-{n}",
        "source": source,
        "type": "lesson.completed",
        "actor": f"user-{n % actors:05d}",
        "occurred_at": (base + timedelta(milliseconds=n)).isoformat(),
        "properties": {"course": "gdpr"},
    }


def bodies(tag: str, source: str, count: int, size: int, actors: int) -> list[bytes]:
    """Request bodies, built before any clock starts."""
    base = datetime.now(UTC) - timedelta(hours=1)
    return [
        orjson.dumps(
            [event_body(tag, source, n, actors, base) for n in range(i, min(i + size, count))]
        )
        for i in range(0, count, size)
    ]


def accepted_ids(response: httpx.Response, size: int) -> list[str]:
    if response.status_code != 200:
        raise BenchError(f"POST /v1/events: {response.status_code} {response.text[:500]}")
    report = orjson.loads(response.content)
    if report["accepted"] != size:
        raise BenchError(f"{report['accepted']} of {size} accepted: {report['results'][:3]}")
    return [r["event_id"] for r in report["results"]]


def positions(db: Path, source: str) -> dict[str, int]:
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        rows = conn.execute("SELECT id, position FROM events WHERE source = ?", (source,))
        return {event_id: int(position) for event_id, position in rows}


def delivery_states(db: Path) -> dict[str, Any]:
    """Deliveries by status and attempts that did not get a 2xx, from the store itself."""
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        statuses = dict(
            conn.execute("SELECT status, count(*) FROM webhook_deliveries GROUP BY status")
        )
        failed = conn.execute(
            "SELECT count(*) FROM webhook_attempts WHERE status_code IS NULL "
            "OR status_code NOT BETWEEN 200 AND 299"
        ).fetchone()[0]
        retried = conn.execute("SELECT count(*) FROM webhook_deliveries WHERE attempts > 1")
        return {"deliveries": statuses, "failed_attempts": failed, "retried": retried.fetchone()[0]}


def check_arrivals(
    arrivals: Sequence[Arrival], secrets: dict[str, str], rng: random.Random
) -> dict[str, Any]:
    """Headers on every request; standardwebhooks accepts a sample of signatures and refuses
    a tampered body; no message came twice to one endpoint."""
    missing = sum(
        1
        for a in arrivals
        if not all(
            a.headers.get(h) for h in ("webhook-id", "webhook-timestamp", "webhook-signature")
        )
    )
    twice = sum(
        n - 1 for n in Counter((a.path, a.headers.get("webhook-id")) for a in arrivals).values()
    )
    wrong_type = sum(1 for a in arrivals if a.message.get("type") != "points.awarded")
    sample = rng.sample(list(arrivals), min(SIGNATURES_CHECKED, len(arrivals)))
    bad = 0
    for a in sample:
        try:
            StandardWebhook(secrets[a.path]).verify(a.body, a.headers)
        except WebhookVerificationError:
            bad += 1
    tampered_refused = True
    if sample:
        try:
            StandardWebhook(secrets[sample[0].path]).verify(
                sample[0].body + b" ", sample[0].headers
            )
            tampered_refused = False
        except WebhookVerificationError:
            pass
    return {
        "signatures_checked": len(sample),
        "signatures_bad": bad,
        "tampered_refused": tampered_refused,
        "without_headers": missing,
        "repeated": twice,
        "other_types": wrong_type,
    }


def spread(values_ms: Sequence[float]) -> dict[str, float]:
    """p50/p90/p99/max of a list in ms (missing values as +inf, so they count)."""
    ordered = sorted(values_ms)
    return {f"p{p}": round(percentile(ordered, p), 1) for p in (50, 90, 99)} | {
        "max": round(ordered[-1], 1) if ordered else math.nan
    }


# --- case 1: a backlog ----------------------------------------------------------------------


@dataclass(slots=True)
class BacklogResult:
    subscriptions: int
    events: int
    expected: int  # deliveries: events x subscriptions
    arrived: int
    missing: int  # (endpoint, event) pairs that never arrived
    unknown: int  # arrivals for an event this case did not send
    drained: bool
    ingest_s: float  # first POST sent to last returned
    scored_s: float | None  # first POST to the scoring cursor past the last event
    fanned_out_s: float | None  # first POST to the fan-out cursor past the last message
    first_arrival_s: float | None
    last_arrival_s: float | None  # the time to drain, from the first POST
    steady_per_s: float | None  # deliveries/s between the 10th and 90th percentile arrival
    quarters_per_s: list[float]  # deliveries/s in each quarter of the arrivals, in order
    messages_per_s: float | None  # steady_per_s / subscriptions
    drain_estimate_s: float | None  # when not drained: last arrival + what is left / steady
    checks: dict[str, Any] = field(default_factory=dict)
    store: dict[str, Any] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)


def rate(times: Sequence[float], lo: int, hi: int) -> float | None:
    """Arrivals per second between the ``lo``-th and ``hi``-th arrival (sorted times)."""
    if hi - lo < 2 or times[hi] <= times[lo]:
        return None
    return (hi - lo) / (times[hi] - times[lo])


def backlog_case(
    args: argparse.Namespace,
    receiver: Receiver,
    subscriptions: int,
    events: int,
    budget: Budget,
    rng: random.Random,
    keep: float,
) -> BacklogResult:
    """Ingest ``events`` at once, then wait for every delivery (``keep``: seconds of the
    budget left for the cases after this one)."""
    data_dir = Path(tempfile.mkdtemp(prefix="plaudit-bench-wh-", dir=args.data_parent))
    db = data_dir / "plaudit.db"
    try:
        with running_server(data_dir, args.what_if_sql) as (server, client):
            secrets = prepare(client, receiver, subscriptions, args.max_in_flight)
            source = f"bench-backlog-{subscriptions}"
            work = bodies("b", source, events, 1000, args.actors)
            expected = events * subscriptions
            print(
                f"backlog, {subscriptions} subscription(s): {events:,} events, "
                f"{expected:,} deliveries expected (server pid {server.pid})",
                flush=True,
            )
            sent: list[str] = []
            receiver.take()  # nothing left over from an earlier case
            with CursorWatch(db) as cursors, CpuWatch(server.pid, receiver.pid) as cpu:
                started = time.time()
                for body in work:
                    response = client.post("/v1/events", content=body, headers=JSON)
                    sent += accepted_ids(response, body.count(b'"id"'))
                ingested = time.time()
                _, drained = receiver.wait_for(expected, min(args.drain_timeout, budget.left(keep)))
                time.sleep(0.2)  # a last look for anything sent twice
            arrivals = receiver.take()
            last_position = max(positions(db, source).values())
            store = delivery_states(db)
            with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
                last_seq = int(conn.execute("SELECT max(seq) FROM outbox").fetchone()[0] or 0)
    finally:
        if not args.keep_data:
            shutil.rmtree(data_dir, ignore_errors=True)
    ours = set(sent)
    pairs = {(a.path, a.message["data"].get("event_id")) for a in arrivals}
    unknown = sum(1 for a in arrivals if a.message["data"].get("event_id") not in ours)
    missing = expected - len({p for p in pairs if p[1] in ours and p[0] in secrets})
    times = sorted(a.at for a in arrivals)
    n = len(times)
    steady = rate(times, n // 10, n * 9 // 10 - 1) if n else None
    quarters = [rate(times, q * n // 4, (q + 1) * n // 4 - 1) for q in range(4)] if n else []
    scored = CursorWatch.reached(cursors.scoring, last_position)
    fanned = CursorWatch.reached(cursors.fanned, last_seq)

    def since(at: float | None) -> float | None:
        return None if at is None else round(at - started, 2)

    done = drained and missing == 0
    last = since(times[-1] if times else None)
    estimate = None
    if not done and steady and last is not None:
        estimate = round(last + missing / steady)
    return BacklogResult(
        subscriptions=subscriptions,
        events=events,
        expected=expected,
        arrived=n,
        missing=missing,
        unknown=unknown,
        drained=done,
        ingest_s=round(ingested - started, 2),
        scored_s=since(scored),
        fanned_out_s=since(fanned),
        first_arrival_s=since(times[0] if times else None),
        last_arrival_s=last,
        steady_per_s=None if steady is None else round(steady, 1),
        quarters_per_s=[round(q or 0.0, 1) for q in quarters],
        messages_per_s=None if steady is None else round(steady / subscriptions, 1),
        drain_estimate_s=estimate,
        checks=check_arrivals(arrivals, secrets, rng),
        store=store,
        cpu=cpu.shares,
    )


# --- case 2: issuance latency at a steady rate ----------------------------------------------


@dataclass(frozen=True, slots=True)
class Sent:
    scheduled: float  # when the pacing wanted it sent (wall clock)
    sent: float
    returned: float
    event_ids: list[str]


async def paced(
    url: str, key_headers: dict[str, str], work: Sequence[bytes], every: float
) -> list[Sent]:
    """Open loop: batch k is sent at start + k * every whether or not earlier ones returned."""
    limits = httpx.Limits(max_connections=32, max_keepalive_connections=32)
    async with httpx.AsyncClient(
        base_url=url, headers={**key_headers, **JSON}, limits=limits, timeout=120
    ) as client:

        async def send(scheduled: float, body: bytes) -> Sent:
            at = time.time()
            response = await client.post("/v1/events", content=body)
            returned = time.time()
            return Sent(scheduled, at, returned, accepted_ids(response, body.count(b'"id"')))

        tasks = []
        start = time.time() + 0.05
        for k, body in enumerate(work):
            scheduled = start + k * every
            delay = scheduled - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(send(scheduled, body)))
        return list(await asyncio.gather(*tasks))


@dataclass(slots=True)
class LatencyResult:
    rate: float  # events/s asked
    seconds: float
    events: int
    arrived: int
    missing: int  # events whose webhook did not come within the drain timeout
    achieved_rate: float  # events sent / (last send - first send)
    late_sends: int  # batches sent over 10 ms after their scheduled time
    from_sent_ms: dict[str, float]  # POST sent -> webhook arrived
    from_returned_ms: dict[str, float]  # POST returned -> webhook arrived
    ingest_ms: dict[str, float]  # POST sent -> returned
    scoring_lag_ms: dict[str, float]  # POST returned -> scoring committed (cursor seen)
    dispatch_ms: dict[str, float]  # scoring committed -> webhook arrived
    stamped_to_arrival_ms: dict[str, float]  # message timestamp (scoring batch) -> arrived
    drain_after_last_send_s: float | None
    arrived_by_last_send: int  # webhooks in by the time the last POST was sent
    deliveries_per_s: float | None  # between the 10th and 90th percentile arrival
    target_met: bool
    checks: dict[str, Any] = field(default_factory=dict)
    store: dict[str, Any] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)


def event_latencies(
    batches: Sequence[Sent],
    by_event: dict[str, Arrival],
    where: dict[str, int],
    cursors: CursorWatch,
) -> dict[str, list[float]]:
    """Per event, in ms; a webhook that never came counts as +inf."""
    inf = math.inf
    out: dict[str, list[float]] = {
        k: [] for k in ("from_sent", "from_returned", "ingest", "scoring", "dispatch", "stamped")
    }
    for b in batches:
        for event_id in b.event_ids:
            got = by_event.get(event_id)
            committed = CursorWatch.reached(cursors.scoring, where[event_id])
            out["ingest"].append((b.returned - b.sent) * 1000)
            out["scoring"].append(inf if committed is None else (committed - b.returned) * 1000)
            if got is None:
                for k in ("from_sent", "from_returned", "dispatch"):
                    out[k].append(inf)
                continue
            out["from_sent"].append((got.at - b.sent) * 1000)
            out["from_returned"].append((got.at - b.returned) * 1000)
            out["dispatch"].append(inf if committed is None else (got.at - committed) * 1000)
            stamp = datetime.fromisoformat(got.message["timestamp"].replace("Z", "+00:00"))
            out["stamped"].append((got.at - stamp.timestamp()) * 1000)
    return out


def latency_case(
    args: argparse.Namespace, receiver: Receiver, budget: Budget, rng: random.Random
) -> LatencyResult:
    data_dir = Path(tempfile.mkdtemp(prefix="plaudit-bench-wh-", dir=args.data_parent))
    per_batch = max(1, round(args.rate * args.every))
    count = round(args.rate * args.seconds / per_batch) * per_batch
    try:
        with running_server(data_dir, args.what_if_sql) as (server, client):
            secrets = prepare(client, receiver, 1, args.max_in_flight)
            auth = {"Authorization": client.headers["Authorization"]}
            print(
                f"latency: {args.rate:,.0f} events/s "
                f"({per_batch} every {args.every * 1000:.0f} ms) "
                f"for {args.seconds:g} s, 1 subscription (server pid {server.pid})",
                flush=True,
            )
            warm = bodies("w", "bench-warmup", per_batch * 10, per_batch, args.actors)
            asyncio.run(paced(server.url, auth, warm, args.every))  # untimed
            receiver.wait_for(len(warm) * per_batch, min(30.0, budget.left(args.seconds + 10)))
            receiver.take()
            source = "bench-latency"
            work = bodies("l", source, count, per_batch, args.actors)
            db = data_dir / "plaudit.db"
            with CursorWatch(db) as cursors, CpuWatch(server.pid, receiver.pid) as cpu:
                batches = asyncio.run(paced(server.url, auth, work, args.every))
                last_send = max(b.sent for b in batches)
                wait = min(args.drain_timeout, budget.left(5))
                receiver.wait_for(count, wait)
                time.sleep(0.2)
            arrivals = receiver.take()
            where = positions(db, source)
            store = delivery_states(db)
    finally:
        if not args.keep_data:
            shutil.rmtree(data_dir, ignore_errors=True)
    by_event: dict[str, Arrival] = {}
    for a in arrivals:
        by_event.setdefault(a.message["data"].get("event_id"), a)
    ms = event_latencies(batches, by_event, where, cursors)
    sends = sorted(b.sent for b in batches)
    times = sorted(a.at for a in arrivals)
    steady = rate(times, len(times) // 10, len(times) * 9 // 10 - 1) if times else None
    latest = max((a.at for a in arrivals), default=None)
    missing = sum(1 for b in batches for e in b.event_ids if e not in by_event)
    p99 = spread(ms["from_sent"])["p99"]
    return LatencyResult(
        rate=args.rate,
        seconds=args.seconds,
        events=count,
        arrived=count - missing,
        missing=missing,
        achieved_rate=round(count / (sends[-1] - sends[0] + args.every), 1),
        late_sends=sum(1 for b in batches if b.sent - b.scheduled > 0.010),
        from_sent_ms=spread(ms["from_sent"]),
        from_returned_ms=spread(ms["from_returned"]),
        ingest_ms=spread(ms["ingest"]),
        scoring_lag_ms=spread(ms["scoring"]),
        dispatch_ms=spread(ms["dispatch"]),
        stamped_to_arrival_ms=spread(ms["stamped"]),
        drain_after_last_send_s=None if latest is None else round(latest - last_send, 3),
        arrived_by_last_send=sum(1 for a in arrivals if a.at <= last_send),
        deliveries_per_s=None if steady is None else round(steady, 1),
        target_met=missing == 0 and p99 < TARGET_P99_MS,
        checks=check_arrivals(arrivals, secrets, rng),
        store=store,
        cpu=cpu.shares,
    )


# --- report ---------------------------------------------------------------------------------


def _fmt(value: float | None, digits: int = 1) -> str:
    if value is None or math.isnan(value):
        return "-"
    if math.isinf(value):
        return "inf"
    return f"{value:,.{digits}f}"


def _cpu(shares: dict[str, float]) -> str:
    return ", ".join(f"{k.removesuffix('_cpu_pct')} {v:.0f}" for k, v in shares.items())


def aligned(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def backlog_table(results: Sequence[BacklogResult]) -> str:
    """Times in seconds from the first POST of the case."""
    head = (
        "subs",
        "events",
        "deliveries",
        "arrived",
        "ingested s",
        "scored s",
        "fanned out s",
        "1st arrival s",
        "drained s",
        "steady deliv/s",
        "messages/s",
        "by quarter deliv/s",
        "CPU % (of a core)",
    )
    rows = [head]
    for r in results:
        drained = _fmt(r.last_arrival_s, 1)
        if not r.drained:
            drained = f"not drained at {drained} (~{_fmt(r.drain_estimate_s, 0)})"
        rows.append(
            (
                str(r.subscriptions),
                f"{r.events:,}",
                f"{r.expected:,}",
                f"{r.arrived:,}",
                _fmt(r.ingest_s, 2),
                _fmt(r.scored_s, 2),
                _fmt(r.fanned_out_s, 2),
                _fmt(r.first_arrival_s, 2),
                drained,
                _fmt(r.steady_per_s, 0),
                _fmt(r.messages_per_s, 0),
                " / ".join(_fmt(q, 0) for q in r.quarters_per_s),
                _cpu(r.cpu),
            )
        )
    return aligned(rows)


def latency_table(r: LatencyResult) -> str:
    rows: list[Sequence[str]] = [("ms", "p50", "p90", "p99", "max")]
    for name, values in (
        ("POST sent -> webhook arrived", r.from_sent_ms),
        ("POST returned -> webhook arrived", r.from_returned_ms),
        ("  ingest (POST sent -> returned)", r.ingest_ms),
        ("  scoring lag (returned -> scored, committed)", r.scoring_lag_ms),
        ("  dispatch (committed -> arrived)", r.dispatch_ms),
        ("message timestamp (scoring batch) -> arrived", r.stamped_to_arrival_ms),
    ):
        rows.append((name, *(_fmt(values[k]) for k in ("p50", "p90", "p99", "max"))))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines = [
        "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def verdicts(backlogs: Sequence[BacklogResult], latency: LatencyResult | None) -> list[str]:
    lines = []
    for b in backlogs:
        if not b.drained:
            lines.append(
                f"backlog, {b.subscriptions} subscription(s): NOT DRAINED: {b.arrived:,} of "
                f"{b.expected:,} deliveries arrived within the drain timeout ({b.missing:,} "
                f"missing; at the steady rate it would drain at ~{_fmt(b.drain_estimate_s, 0)} s)"
            )
        if b.unknown:
            lines.append(f"backlog, {b.subscriptions}: {b.unknown} arrivals for unknown events")
    if latency is not None:
        r = latency
        p99 = r.from_sent_ms["p99"]
        met = "met" if r.target_met else "NOT MET"
        lines.append(
            f"issuance latency p99 {_fmt(p99)} ms from POST sent (target < {TARGET_P99_MS:.0f} ms "
            f"in the embedded mode): {met}; {r.arrived:,} of {r.events:,} webhooks arrived, "
            f"{r.missing:,} missing"
        )
        if r.late_sends:
            lines.append(f"warning: {r.late_sends} POSTs were sent over 10 ms late (pacing)")
    checks = [b.checks for b in backlogs] + ([latency.checks] if latency else [])
    verified = sum(c["signatures_checked"] for c in checks)
    bad = sum(c["signatures_bad"] for c in checks)
    tampered = all(c["tampered_refused"] for c in checks)
    other = sum(c["without_headers"] + c["repeated"] + c["other_types"] for c in checks)
    lines.append(
        f"signatures: {verified - bad} of {verified} sampled verified by standardwebhooks"
        f"{'' if tampered else '; a TAMPERED body was accepted'}; "
        f"{other} requests without headers, repeated or of another type"
    )
    cpus = [b.cpu for b in backlogs] + ([latency.cpu] if latency else [])
    noisy = [c["other_cpu_pct"] for c in cpus if c.get("other_cpu_pct", 0) > NOISY_PCT]
    if noisy:
        lines.append(
            f"warning: other processes used up to {max(noisy):.0f}% of a core during "
            f"{len(noisy)} case(s): the figures are low; run again on a quiet machine"
        )
    return lines


def memory_gb() -> float | None:
    try:
        first = Path("/proc/meminfo").read_text().splitlines()[0].split()
    except OSError:
        return None
    return round(int(first[1]) / 2**20, 1)


# --- command --------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark webhook deliveries (backlog throughput, fan-out) and issuance "
        "latency at a steady rate, against a fresh `plaudit serve` per case.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--events", type=int, default=20_000, help="backlog, 1 subscription")
    parser.add_argument(
        "--fanout-events",
        type=int,
        default=5_000,
        help="backlog, --fanout subscriptions (default: as many deliveries as --events)",
    )
    parser.add_argument("--fanout", type=int, default=4, help="subscriptions in the fan-out case")
    parser.add_argument("--rate", type=float, default=1000, help="latency case: events/s")
    parser.add_argument("--every", type=float, default=0.05, help="latency case: s between POSTs")
    parser.add_argument("--seconds", type=float, default=30, help="latency case: paced sending")
    parser.add_argument(
        "--drain-timeout", type=float, default=60, help="per case: wait for the deliveries"
    )
    parser.add_argument("--budget", type=float, default=290, help="the whole run stops by then")
    parser.add_argument(
        "--max-in-flight",
        type=int,
        default=None,
        help="subscriptions' max_in_flight (default: the server's, 4)",
    )
    parser.add_argument(
        "--what-if-sql",
        action="append",
        default=[],
        metavar="SQL",
        help="run on each migrated data dir before the server starts, to measure a fix "
        "before making it (e.g. an index); repeatable; the result is not the product",
    )
    parser.add_argument("--actors", type=int, default=1000, help="distinct actors")
    parser.add_argument("--cases", default="backlog,fanout,latency", help="which, comma-separated")
    parser.add_argument("--quick", action="store_true", help="small cases, for a smoke test")
    parser.add_argument("--seed", type=int, default=1, help="signature sample seed")
    parser.add_argument("--data-parent", type=Path, default=None, help="where data dirs go")
    parser.add_argument("--keep-data", action="store_true", help="keep the data dirs and logs")
    parser.add_argument("--json", type=Path, default=None, help="also write results here ('-')")
    args = parser.parse_args(argv)
    if args.quick:
        args.events, args.fanout_events, args.seconds = 2_000, 500, 5
        args.drain_timeout, args.budget = 20, 90
    args.cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    if not set(args.cases) <= {"backlog", "fanout", "latency"}:
        parser.error("--cases: backlog, fanout, latency")
    if min(args.events, args.fanout_events, args.fanout, args.actors) < 1 or args.every <= 0:
        parser.error("--events, --fanout-events, --fanout, --actors ≥ 1 and --every > 0")
    return args


def run(
    args: argparse.Namespace, budget: Budget
) -> tuple[list[BacklogResult], LatencyResult | None]:
    rng = random.Random(args.seed)
    out_dir = Path(tempfile.mkdtemp(prefix="plaudit-bench-wh-receiver-", dir=args.data_parent))
    backlogs: list[BacklogResult] = []
    latency = None
    # What the latency case needs (sending, warm-up, drain), kept from the backlog cases.
    keep = args.seconds + 45 if "latency" in args.cases else 0
    receiver: Receiver | None = None
    try:
        receiver = Receiver(out_dir)
        print(f"receiver pid {receiver.pid} on {receiver.url('/')}", flush=True)
        for case, subscriptions, events in (
            ("backlog", 1, args.events),
            ("fanout", args.fanout, args.fanout_events),
        ):
            if case not in args.cases:
                continue
            if budget.left(keep) < 15:
                print(f"{case}: skipped, the budget is spent")
                continue
            result = backlog_case(args, receiver, subscriptions, events, budget, rng, keep)
            backlogs.append(result)
            print(
                f"  {result.arrived:,} of {result.expected:,} arrived; steady "
                f"{_fmt(result.steady_per_s, 0)} deliveries/s; the last at "
                f"{_fmt(result.last_arrival_s, 2)} s",
                flush=True,
            )
        if "latency" in args.cases:
            if budget.left() < args.seconds + 15:
                print("latency: skipped, the budget is spent")
            else:
                latency = latency_case(args, receiver, budget, rng)
                print(
                    f"  {latency.arrived:,} of {latency.events:,} arrived; p99 from sent "
                    f"{_fmt(latency.from_sent_ms['p99'])} ms",
                    flush=True,
                )
        return backlogs, latency
    finally:
        if receiver is not None:
            receiver.stop()
        shutil.rmtree(out_dir, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    stop_on_sigterm()
    budget = Budget(args.budget)
    about = machine()
    about["memory_gb"] = memory_gb()
    pinned_code(about)
    print(
        f"{about['date']}  {about['cpus']} CPUs ({about['cpu']}), {about['memory_gb']} GB  "
        f"Python {about['python']}  plaudit {about['revision'] or '?'}"
    )
    print(f"code under test: {about['code']}")
    print("note: the bench, the receiver and the server share this machine's cores")
    warn_if_busy()
    try:
        backlogs, latency = run(args, budget)
    except BenchError as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bench: interrupted (the server and the receiver were stopped)", file=sys.stderr)
        return 130
    print()
    if backlogs:
        print(backlog_table(backlogs))
        print()
    if latency is not None:
        r = latency
        print(
            f"latency: {r.events:,} events at {r.achieved_rate:,.0f}/s for {r.seconds:g} s; "
            f"{r.arrived_by_last_send:,} webhooks in by the last POST, the last "
            f"{_fmt(r.drain_after_last_send_s, 2)} s after it; deliveries "
            f"{_fmt(r.deliveries_per_s, 0)}/s; CPU % {_cpu(r.cpu)}"
        )
        print(latency_table(latency))
        print()
    for line in verdicts(backlogs, latency):
        print(line)
    for name, store, checks in [
        *((f"backlog x{b.subscriptions}", b.store, b.checks) for b in backlogs),
        *([("latency", latency.store, latency.checks)] if latency else []),
    ]:
        print(f"{name}: store {store}; checks {checks}")
    if args.json is not None:
        settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
        document = {
            "machine": about,
            "settings": {k: v for k, v in settings.items() if k != "json"},
            "target_p99_ms": TARGET_P99_MS,
            "backlog": [asdict(b) for b in backlogs],
            "latency": None if latency is None else asdict(latency),
            "verdicts": verdicts(backlogs, latency),
        }
        save_json(document, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
