"""The scale-out mode under failure: 2 API and 2 worker processes on PostgreSQL, Redis and a
NATS server of the test's own. 100,000 events (5% of them duplicates) are sent while one
worker is killed with SIGKILL twice and NATS is restarted once. At the end:

- every acknowledged event is in the log, with the id it was acknowledged with;
- every logged event was scored exactly once: one ledger entry each, none doubled;
- the ledger's total equals the total computed here, independently, from what was sent;
- the leaderboard Redis serves equals the standings in SQL, and both equal the expected
  per-player totals.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text

from tests.support.cluster import Cluster, cluster

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis, pytest.mark.nats]

EVENTS = 100_000
BATCH = 1000
DUPLICATES = 50  # per batch: 5% of what is sent repeats an event sent before
SENDERS = 4
PLAYERS = 2000
SCORED_TIMEOUT = 90.0

RULES = """
currencies: [xp]
rules:
  - {id: task, on: task.done, award: {xp: "event.properties.points"}}
leaderboards:
  - {id: xp, name: XP, metric: {currency: xp}}
"""


def _event(number: int) -> dict[str, Any]:
    return {
        "id": f"e{number}",
        "source": "lms",
        "type": "task.done",
        "actor": f"u{number * 7919 % PLAYERS}",
        "occurred_at": "2026-11-30T09:00:00Z",
        "properties": {"points": 1 + number % 9},
    }


class Feed:
    """Numbered batches of new events, each with repeats of events sent before."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.next_batch = 0
        self.acked: dict[str, str] = {}  # event key -> event_id it was acknowledged with
        self.sent_new = 0

    def take(self) -> list[dict[str, Any]] | None:
        with self.lock:
            number = self.next_batch
            if number * (BATCH - DUPLICATES) >= EVENTS - EVENTS // 20:
                return None
            self.next_batch += 1
        first = number * (BATCH - DUPLICATES)
        fresh = [_event(n) for n in range(first, first + BATCH - DUPLICATES)]
        earlier = range(0, max(first, BATCH - DUPLICATES))
        repeats = [
            _event(earlier[(number * 131 + i * 17) % len(earlier)]) for i in range(DUPLICATES)
        ]
        return fresh + repeats

    def record(self, results: list[dict[str, Any]], batch: list[dict[str, Any]]) -> None:
        with self.lock:
            for sent, result in zip(batch, results, strict=True):
                assert result["status"] in ("accepted", "duplicate"), result
                known = self.acked.setdefault(sent["id"], result["event_id"])
                assert known == result["event_id"], (sent["id"], known, result)


def _send(made: Cluster, feed: Feed, errors: list[str]) -> None:
    with made.client() as client:
        while (batch := feed.take()) is not None:
            for _ in range(5):  # a request cut by a restart is sent again: more duplicates
                try:
                    answer = client.post("/v1/events", json=batch)
                except httpx.HTTPError as exc:
                    errors.append(f"{type(exc).__name__}: {exc}")
                    time.sleep(0.5)
                    continue
                assert answer.status_code == 200, f"{answer.text[:500]}\n{made.log('api')}"
                feed.record(answer.json()["results"], batch)
                break
            else:
                raise AssertionError(f"a batch was never acknowledged: {errors[-3:]}")


def _chaos(made: Cluster, feed: Feed, log: list[str]) -> None:
    steps: list[tuple[int, str, Callable[[], None]]] = [
        (15_000, "kill worker", lambda: made.kill_worker(0)),
        (45_000, "restart NATS", made.nats.restart),
        (70_000, "kill worker", lambda: made.kill_worker(0)),
    ]
    for threshold, what, act in steps:
        while len(feed.acked) < threshold and feed.next_batch * BATCH < EVENTS:
            time.sleep(0.05)
        act()
        log.append(f"{what} at {len(feed.acked)} acknowledged")


def test_kills_and_a_stream_restart_lose_nothing_and_double_nothing(tmp_path: Path) -> None:
    with cluster(tmp_path, api_processes=2, workers=2, PLAUDIT_STREAM__ACK_WAIT="PT5S") as made:
        with made.client() as client:
            created = client.post("/v1/rulesets", json={"name": "crash", "source": RULES})
            assert created.status_code == 201, created.text
            published = client.post(f"/v1/rulesets/{created.json()['id']}/publish", json={})
            assert published.status_code == 201, published.text

        feed, errors, chaos_log = Feed(), list[str](), list[str]()
        chaos = threading.Thread(target=_chaos, args=(made, feed, chaos_log))
        chaos.start()
        senders = [
            threading.Thread(target=_send, args=(made, feed, errors)) for _ in range(SENDERS)
        ]
        for sender in senders:
            sender.start()
        for sender in senders:
            sender.join()
        chaos.join()
        assert len(chaos_log) == 3, chaos_log

        expected: dict[str, int] = defaultdict(int)
        for key in feed.acked:
            event = _event(int(key[1:]))
            expected[event["actor"]] += event["properties"]["points"]
        total = sum(expected.values())

        engine = create_engine(made.env["PLAUDIT_DATABASE_URL"])
        try:
            deadline = time.monotonic() + SCORED_TIMEOUT
            while True:
                with engine.connect() as conn:
                    scored, points = conn.execute(
                        text("SELECT count(*), coalesce(sum(amount), 0) FROM ledger")
                    ).one()
                if (scored, points) == (len(feed.acked), total):
                    break
                assert time.monotonic() < deadline, (
                    f"scored {scored} of {len(feed.acked)} events ({points} of {total} xp); "
                    f"chaos: {chaos_log}; worker log: {made.log('worker0')}{made.log('worker1')}"
                )
                time.sleep(0.5)
            with engine.connect() as conn:
                logged: dict[str, str] = dict(
                    conn.execute(text("SELECT key, id FROM events")).all()
                )
                doubled = conn.execute(
                    text("SELECT event_id FROM ledger GROUP BY event_id HAVING count(*) > 1")
                ).all()
                by_actor: dict[str, int] = dict(
                    conn.execute(
                        text(
                            "SELECT i.external_id, s.units FROM board_scores s JOIN identities i"
                            " ON i.tenant_id = s.tenant_id AND i.player_id = s.subject"
                            " WHERE s.board_id = 'xp'"
                        )
                    ).all()
                )
                players: dict[str, str] = dict(
                    conn.execute(text("SELECT player_id, external_id FROM identities")).all()
                )
        finally:
            engine.dispose()

        assert logged == feed.acked  # nothing acknowledged is missing; nothing else got in
        assert doubled == []
        assert {a: u / 10_000 for a, u in by_actor.items()} == expected

        # The board Redis serves (through the API), once the projection has caught up.
        deadline = time.monotonic() + 30
        with made.client() as client:
            while True:
                served: dict[str, float] = {}
                cursor = None
                while True:
                    params: dict[str, Any] = {"limit": 1000}
                    if cursor:
                        params["cursor"] = cursor
                    got = client.get("/v1/leaderboards/xp/standings", params=params)
                    assert got.status_code == 200, (got.status_code, got.text[:500])
                    page = got.json()
                    served.update((players[i["subject"]], i["score"]) for i in page["items"])
                    cursor = page["next_cursor"]
                    if not cursor:
                        break
                if served == expected or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
        assert served == expected
