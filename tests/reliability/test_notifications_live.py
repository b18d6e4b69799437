"""Webhooks and player streams against a real ``plaudit serve``: a dispatcher killed between
sending and recording sends the message again with the same webhook-id; a player's stream
pushes badges and levels as they happen and resumes from Last-Event-ID."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from standardwebhooks.webhooks import Webhook

from tests.support.receiver import Answer, Receiver
from tests.support.server import LiveServer, PlauditServer, create_admin_key
from tests.support.sse import EventReader

pytestmark = pytest.mark.slow

TIMEOUT = 1  # seconds: the dispatcher's send timeout, so its lease runs out soon
WAIT = 30.0  # longest a test waits for an expected delivery or event
RULES = """\
currencies: [xp]
rules:
  - id: lesson
    on: lesson.completed
    award: {xp: 10}
levels:
  currency: xp
  thresholds: [{name: Novice, at: 0}, {name: Learner, at: 20}, {name: Expert, at: 40}]
badges:
  - id: scholar
    name: Scholar
    criteria: {count: {on: lesson.completed, at_least: 2}}
leaderboards:
  - id: lessons
    name: Lessons
    metric: {count: {on: lesson.completed}}
"""


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveServer]:
    # The server runs in tmp_path and reads its .env: the only way to set a PLAUDIT_* value.
    (tmp_path / ".env").write_text(
        "PLAUDIT_WEBHOOKS__ALLOW_LOOPBACK=true\n"
        f"PLAUDIT_WEBHOOKS__TIMEOUT=PT{TIMEOUT}S\n"
        "PLAUDIT_LEADERBOARDS__STREAM_INTERVAL=PT0.5S\n"
    )
    data = tmp_path / "data"
    key = create_admin_key(data)
    with PlauditServer(data) as server:
        server.start()
        found = LiveServer(server, key)
        with found.client() as client:
            created = client.post("/v1/rulesets", json={"name": "Live", "source": RULES})
            assert created.status_code == 201, created.text
            published = client.post(f"/v1/rulesets/{created.json()['id']}/publish")
            assert published.status_code == 201, published.text
        yield found


def _lessons(client: httpx.Client, actor: str, *keys: str) -> None:
    now = datetime.now(UTC).isoformat()
    events = [
        {
            "id": k,
            "source": "lms",
            "type": "lesson.completed",
            "actor": actor,
            "occurred_at": now,
            "properties": {},
        }
        for k in keys
    ]
    response = client.post("/v1/events", json=events)
    assert response.status_code == 200, response.text


def _until_scored(client: httpx.Client, ref: str, xp: float) -> None:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        found = client.get(f"/v1/players/{ref}")
        if found.status_code == 200 and found.json()["standing"]["balances"].get("xp") == xp:
            return
        time.sleep(0.05)
    raise AssertionError(f"{ref} never reached {xp} xp")


def test_a_dispatcher_killed_between_sending_and_recording_sends_again_with_the_same_id(
    live: LiveServer,
) -> None:
    def answer(path: str, n: int) -> Answer:
        return Answer(hang=True) if n == 0 else Answer(200)  # the first send never completes

    with Receiver(answer) as receiver, live.client() as client:
        hook = client.post(
            "/v1/webhooks", json={"url": receiver.url(), "event_types": ["badge.awarded"]}
        )
        assert hook.status_code == 201, hook.text
        _lessons(client, "alice", "k1", "k2")
        [first] = receiver.wait_for(1, WAIT)
        live.server.kill()  # SIGKILL while the send is in flight: nothing was recorded
        live.server.start()
        got = receiver.wait_for(2, WAIT + TIMEOUT + 15)  # after the lease runs out
        again = got[1]
        assert again.headers["webhook-id"] == first.headers["webhook-id"]
        assert again.body == first.body
        Webhook(hook.json()["secret"]).verify(again.body, again.headers)
        assert orjson.loads(again.body)["data"]["badge_id"] == "scholar"

    with live.client() as client:
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            found = client.get(f"/v1/webhooks/{hook.json()['id']}/deliveries").json()["items"]
            if found and found[0]["status"] == "delivered":
                break
            time.sleep(0.1)
        assert [(d["status"], d["attempts"]) for d in found] == [("delivered", 2)]


def _read(events: EventReader, wanted: set[str]) -> dict[str, Any]:
    """Events until each kind in ``wanted`` was seen; the last of each kind."""
    seen: dict[str, Any] = {}
    deadline = time.monotonic() + WAIT
    while not wanted <= seen.keys():
        assert time.monotonic() < deadline, f"only {sorted(seen)} of {sorted(wanted)}"
        got = events.next()
        seen[got.event] = got
    return seen


def test_a_players_stream_pushes_badges_and_levels_and_resumes_after_a_reconnect(
    live: LiveServer,
) -> None:
    timeout = httpx.Timeout(10.0, read=5.0)
    url = "/v1/players/lms:alice/notifications/stream"
    with live.client() as client:
        _lessons(client, "alice", "a1")
        _until_scored(client, "lms:alice", 10.0)
        with client.stream("GET", url, timeout=timeout) as response:
            events = EventReader(response)
            ranks = events.next()
            assert ranks.event == "ranks"
            assert [(r["board"], r["rank"], r["score"]) for r in ranks.data] == [
                ("lessons", 1, 1.0)
            ]
            _lessons(client, "alice", "a2")
            seen = _read(events, {"badge.awarded", "level.reached", "rank.changed"})
            badge, level = seen["badge.awarded"], seen["level.reached"]
            assert badge.data["data"]["badge_id"] == "scholar"
            assert level.data["data"]["level"] == "Learner"
            assert seen["rank.changed"].data["score"] == 2.0
            last = max(int(badge.id), int(level.id))

        _lessons(client, "alice", "a3", "a4")  # Expert, while nobody listens
        _until_scored(client, "lms:alice", 40.0)
        headers = {"Last-Event-ID": str(last)}
        with client.stream("GET", url, headers=headers, timeout=timeout) as response:
            events = EventReader(response)
            missed = events.next()
            assert (missed.event, missed.data["data"]["level"]) == ("level.reached", "Expert")
            assert int(missed.id) > last
            assert events.next().event == "ranks"

        bad = client.get(url, headers={"Last-Event-ID": "yesterday"})
        assert bad.status_code == 422
        assert bad.json()["errors"][0]["field"] == "Last-Event-ID"
        assert client.get("/v1/players/lms:nobody/notifications/stream").status_code == 404
