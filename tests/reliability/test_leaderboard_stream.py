"""The live leaderboard stream (SSE) against a real ``plaudit serve``.

ASGITransport buffers a streaming body until it ends, and this one never ends: only a real
server shows events arriving while the connection stays open. Every read has a timeout and
every wait a deadline, so a silent stream fails the test instead of hanging it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.server import LiveServer, PlauditServer, create_admin_key
from tests.support.sse import EventReader

pytestmark = pytest.mark.slow

INTERVAL = 0.5  # seconds: the server's stream_interval, set through its .env
READ_TIMEOUT = 5.0  # longest silence a read waits for (the keepalive comes every 15 s)
WAIT = 10.0  # longest a test waits for an expected event
RULES = """\
currencies: [xp]
rules:
  - id: lesson
    on: lesson.completed
    award: {xp: 10}
leaderboards:
  - id: lessons
    name: Lessons
    metric: {count: {on: lesson.completed}}
  - id: quizzes
    name: Quizzes
    metric: {count: {on: quiz.passed}}
  - id: calls
    name: Calls
    metric: {count: {on: call.logged}}
"""
ALL_TIME = {"key": "all", "state": "open", "start": None, "end": None}


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    home: Path = tmp_path_factory.mktemp("stream")
    # The server runs in ``home`` and reads its .env: the only way to set a PLAUDIT_* value.
    (home / ".env").write_text(f"PLAUDIT_LEADERBOARDS__STREAM_INTERVAL=PT{INTERVAL}S\n")
    data = home / "data"
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


def _event(key: str, actor: str, type: str) -> dict[str, Any]:
    return {
        "id": key,
        "source": "lms",
        "type": type,
        "actor": actor,
        "occurred_at": datetime.now(UTC).isoformat(),
        "properties": {},
    }


def _ingest(client: httpx.Client, *events: dict[str, Any]) -> dict[str, str]:
    """The player id of each actor."""
    response = client.post("/v1/events", json=list(events))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["accepted"] == len(events)
    return {e["actor"]: r["player_id"] for e, r in zip(events, body["results"], strict=True)}


def _stream_timeout() -> httpx.Timeout:
    return httpx.Timeout(10.0, read=READ_TIMEOUT)


def _counts(payload: dict[str, Any]) -> list[tuple[int, str | None, float]]:
    return [(e["rank"], e["subject"], e["score"]) for e in payload["items"]]


def test_the_stream_sends_the_standings_then_each_change(live: LiveServer) -> None:
    with live.client() as client:
        url = "/v1/leaderboards/lessons/stream"
        with client.stream("GET", url, timeout=_stream_timeout()) as response:
            assert response.headers["cache-control"] == "no-cache"
            events = EventReader(response)
            first = events.next()
            assert first.event == "standings"
            assert first.data == {
                "board": "lessons",
                "window": ALL_TIME,
                "participants": 0,
                "items": [],
                "next_cursor": None,
            }
            ids = _ingest(
                client,
                _event("s-a1", "ann", "lesson.completed"),
                _event("s-a2", "ann", "lesson.completed"),
                _event("s-b1", "ben", "lesson.completed"),
            )
            update = events.until("standings", time.monotonic() + WAIT)
            assert update.data["participants"] == 2
            assert _counts(update.data) == [(1, ids["ann"], 2.0), (2, ids["ben"], 1.0)]
            assert update.id != first.id


def test_a_players_rank_is_pushed_when_it_changes(live: LiveServer) -> None:
    with live.client() as client:
        ids = _ingest(client, _event("r-c0", "cleo", "page.viewed"))  # known, not ranked
        url = "/v1/leaderboards/quizzes/stream"
        params: dict[str, str | int] = {"player": "lms:cleo", "top": 1}
        with client.stream("GET", url, params=params, timeout=_stream_timeout()) as response:
            events = EventReader(response)
            first, rank = events.next(), events.next()
            assert (first.event, first.data["items"]) == ("standings", [])
            assert (rank.event, rank.data) == (
                "rank",
                {
                    "board": "quizzes",
                    "window": "all",
                    "subject": ids["cleo"],
                    "rank": None,
                    "score": None,
                },
            )
            ids |= _ingest(
                client,
                _event("r-c1", "cleo", "quiz.passed"),
                _event("r-d1", "dora", "quiz.passed"),
                _event("r-d2", "dora", "quiz.passed"),
            )
            top = events.until("standings", time.monotonic() + WAIT)
            assert top.data["participants"] == 2
            assert _counts(top.data) == [(1, ids["dora"], 2.0)]  # top=1: only the leader
            mine = events.until("rank", time.monotonic() + WAIT)
            assert mine.data == {
                "board": "quizzes",
                "window": "all",
                "subject": ids["cleo"],
                "rank": 2,
                "score": 1.0,
            }


def test_a_burst_of_events_is_coalesced_to_one_update_per_interval(live: LiveServer) -> None:
    sent = 40
    with live.client() as client:
        url = "/v1/leaderboards/calls/stream"
        with client.stream("GET", url, timeout=_stream_timeout()) as response:
            events = EventReader(response)
            assert events.next().data["items"] == []

            failures: list[str] = []

            def send() -> None:
                with live.client() as sender:
                    for i in range(sent):
                        reply = sender.post(
                            "/v1/events", json=[_event(f"c{i}", "eli", "call.logged")]
                        )
                        if reply.status_code != 200:
                            failures.append(reply.text)
                        time.sleep(0.04)

            started = time.monotonic()
            sender = threading.Thread(target=send)
            sender.start()
            try:
                scores: list[float] = []
                deadline = started + WAIT + sent * 0.05
                while not scores or scores[-1] < sent:
                    update = events.until("standings", deadline)
                    scores.append(update.data["items"][0]["score"])
                span = time.monotonic() - started
            finally:
                sender.join(WAIT)
            assert failures == []
            assert scores == sorted(scores)  # every update shows a later state
            assert scores[-1] == float(sent)
            # The server sleeps an interval between two updates: in ``span`` it can send no
            # more than span / INTERVAL + 1 of them, and far fewer than the events sent.
            assert len(scores) <= span / INTERVAL + 1, (len(scores), span)
            assert len(scores) < sent


def test_an_unknown_board_or_player_is_a_404_problem_not_a_broken_stream(live: LiveServer) -> None:
    with live.client(timeout=READ_TIMEOUT) as client:
        board = client.get("/v1/leaderboards/nope/stream")
        assert board.status_code == 404
        assert board.headers["content-type"] == "application/problem+json"
        assert board.json()["detail"] == (
            "no leaderboard 'nope' in the live rule set (known: calls, lessons, quizzes)"
        )
        player = client.get("/v1/leaderboards/lessons/stream", params={"player": "lms:nobody"})
        assert player.status_code == 404
        assert "lms:nobody" in player.json()["detail"]
        window = client.get("/v1/leaderboards/lessons/stream", params={"window": "2026-11"})
        assert window.status_code == 404
        assert window.json()["detail"] == (
            "window '2026-11': this board's windows are named all (or current, previous)"
        )
