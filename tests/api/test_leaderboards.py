"""Leaderboards through the API: standings, around-me, groups, windows, privacy, reconcile.

The container's clock is the test's FakeClock (2026-06-01 12:00 UTC, a Monday), so windows
open and close when the test moves it. Events are scored and the projection synced by hand.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from plaudit.api.app import create_app
from plaudit.api.hot_reads import HotReads
from plaudit.api.routes import leaderboards as routes
from plaudit.bootstrap import Container
from plaudit.domain.auth import Scope
from plaudit.domain.pagination import encode_cursor
from plaudit.leaderboards.ports import SCALE, BoardKey, Change
from tests.api.conftest import ClientFactory
from tests.conftest import FakeClock, new_key
from tests.support.events import event

pytestmark = pytest.mark.anyio

TENANT = "default"
RULES = """\
currencies: [xp, coins]
rules:
  - id: lesson
    on: lesson.completed
    award: {xp: 10}
leaderboards:
  - id: xp-all
    name: All-time xp
    metric: {currency: xp}
  - id: xp-weekly
    name: Weekly xp
    metric: {currency: xp}
    window: week
    time_zone: America/New_York
    late_grace: PT2H
  - id: quizzes
    name: Quizzes passed
    metric: {count: {on: quiz.passed}}
    min_score: 2
  - id: sales-by-team
    name: Deal value by team
    metric: {sum: {on: deal.closed, property: event.properties.amount}}
    group_by: team
  - id: learners-xp
    name: Learners' xp
    metric: {currency: xp}
    where: player.attributes.role == "learner"
"""
BOARDS = ["xp-all", "xp-weekly", "quizzes", "sales-by-team", "learners-xp"]
# The week of Monday 2026-06-01 in New York: from 04:00 UTC that day to 04:00 UTC a week on.
WEEK = {
    "key": "2026-06-01",
    "state": "open",
    "start": "2026-06-01T04:00:00Z",
    "end": "2026-06-08T04:00:00Z",
}
ALL_TIME = {"key": "all", "state": "open", "start": None, "end": None}


def _at(day: int, hour: int, minute: int = 0) -> str:
    return f"2026-06-{day:02d}T{hour:02d}:{minute:02d}:00Z"


def _lesson(key: str, actor: str, occurred_at: str) -> dict[str, Any]:
    return event(key, actor=actor, occurred_at=occurred_at)


def _entry(rank: int, subject: str | None, score: float, reached_at: str) -> dict[str, Any]:
    hidden = subject is None
    return {
        "rank": rank,
        "subject": subject,
        "score": score,
        "reached_at": reached_at,
        "hidden": hidden,
    }


async def _publish(client: httpx.AsyncClient, source: str = RULES) -> None:
    created = await client.post("/v1/rulesets", json={"name": "League", "source": source})
    assert created.status_code == 201, created.text
    published = await client.post(f"/v1/rulesets/{created.json()['id']}/publish")
    assert published.status_code == 201, published.text


async def _ingest(client: httpx.AsyncClient, *events: dict[str, Any]) -> dict[str, str]:
    """Ingest events; the player id of each actor, and the event id of each event key."""
    response = await client.post("/v1/events", json=list(events))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["accepted"] == len(events), body
    ids: dict[str, str] = {}
    for sent, result in zip(events, body["results"], strict=True):
        ids[sent["actor"]] = result["player_id"]
        ids[f"event:{sent['id']}"] = result["event_id"]
    return ids


def _settle(container: Container) -> None:
    """Score everything received, then bring the projection up to SQL."""
    while container.scoring.score_pending().events:
        pass
    container.leaderboards.sync()


async def _attributes(client: httpx.AsyncClient, actor: str, **attributes: str) -> None:
    response = await client.patch(f"/v1/players/lms:{actor}", json={"attributes": attributes})
    assert response.status_code == 200, response.text


async def _standings(client: httpx.AsyncClient, board: str, **params: str | int) -> dict[str, Any]:
    response = await client.get(f"/v1/leaderboards/{board}/standings", params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def _around(
    client: httpx.AsyncClient, board: str, subject: str, **params: str | int
) -> dict[str, Any]:
    response = await client.get(f"/v1/leaderboards/{board}/standings/{subject}", params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


@dataclass
class League:
    """Six players, scored on every board of RULES (see ``league`` for who did what)."""

    ids: dict[str, str]

    def __getattr__(self, actor: str) -> str:
        try:
            return self.ids[actor]
        except KeyError:
            raise AttributeError(actor) from None

    def xp_all(self) -> list[dict[str, Any]]:
        """The expected all-time xp standings."""
        tied = sorted([self.ids["carol"], self.ids["dave"]])
        return [
            _entry(1, self.ids["bob"], 30.0, _at(1, 9)),
            _entry(2, self.ids["alice"], 30.0, _at(1, 10)),
            _entry(3, tied[0], 20.0, _at(1, 8)),
            _entry(4, tied[1], 20.0, _at(1, 8)),
            _entry(5, self.ids["erin"], 10.0, _at(1, 11)),
        ]


@pytest.fixture
async def league(client: httpx.AsyncClient, container: Container) -> League:
    """xp: bob and alice 30 (bob got there first), carol and dave 20 at the same instant,
    erin 10, frank nothing. Quizzes: alice 3, bob 2, carol 1 (below the minimum of 2).
    Deals: red (alice 100, bob 50), blue (carol 120), dave 500 in no team.
    Learners: alice, carol and erin."""
    await _publish(client)
    ids = await _ingest(
        client,
        _lesson("b1", "bob", _at(1, 7)),
        _lesson("b2", "bob", _at(1, 8)),
        _lesson("b3", "bob", _at(1, 9)),
        _lesson("a1", "alice", _at(1, 7)),
        _lesson("a2", "alice", _at(1, 8)),
        _lesson("a3", "alice", _at(1, 10)),
        _lesson("c1", "carol", _at(1, 6)),
        _lesson("c2", "carol", _at(1, 8)),
        _lesson("d1", "dave", _at(1, 7)),
        _lesson("d2", "dave", _at(1, 8)),
        _lesson("e1", "erin", _at(1, 11)),
        event("f1", actor="frank", type="page.viewed", occurred_at=_at(1, 11)),
        *[
            event(f"qa{i}", actor="alice", type="quiz.passed", occurred_at=_at(1, 9))
            for i in (1, 2, 3)
        ],
        *[event(f"qb{i}", actor="bob", type="quiz.passed", occurred_at=_at(1, 9)) for i in (1, 2)],
        event("qc1", actor="carol", type="quiz.passed", occurred_at=_at(1, 9)),
        event(
            "sa",
            actor="alice",
            type="deal.closed",
            occurred_at=_at(1, 9),
            properties={"amount": 100},
        ),
        event(
            "sb", actor="bob", type="deal.closed", occurred_at=_at(1, 10), properties={"amount": 50}
        ),
        event(
            "sc",
            actor="carol",
            type="deal.closed",
            occurred_at=_at(1, 11),
            properties={"amount": 120},
        ),
        event(
            "sd",
            actor="dave",
            type="deal.closed",
            occurred_at=_at(1, 11),
            properties={"amount": 500},
        ),
    )
    await _attributes(client, "alice", team="red", role="learner")
    await _attributes(client, "bob", team="red", role="manager")
    await _attributes(client, "carol", team="blue", role="learner")
    await _attributes(client, "erin", team="green", role="learner")
    _settle(container)
    return League(ids)


# --- standings --------------------------------------------------------------------------------


async def test_standings_rank_by_score_then_who_got_there_first_then_subject_id(
    client: httpx.AsyncClient, league: League
) -> None:
    body = await _standings(client, "xp-all")
    assert body == {
        "board": "xp-all",
        "window": ALL_TIME,
        "participants": 5,
        "items": league.xp_all(),
        "next_cursor": None,
    }
    weekly = await _standings(client, "xp-weekly")
    assert weekly["window"] == WEEK
    assert weekly["items"] == league.xp_all()


async def test_cursor_paging_gives_every_entry_once_in_rank_order(
    client: httpx.AsyncClient, league: League
) -> None:
    pages: list[list[dict[str, Any]]] = []
    params: dict[str, str | int] = {"limit": 2}
    while True:
        page = await _standings(client, "xp-all", **params)
        assert page["participants"] == 5
        pages.append(page["items"])
        if page["next_cursor"] is None:
            break
        params = {"limit": 2, "cursor": page["next_cursor"]}
    assert [len(p) for p in pages] == [2, 2, 1]
    assert [e for page in pages for e in page] == league.xp_all()


async def test_the_boards_are_listed_with_their_definitions_and_participants(
    client: httpx.AsyncClient, league: League
) -> None:
    listed = (await client.get("/v1/leaderboards")).json()
    assert [(b["id"], b["participants"]) for b in listed] == [
        ("xp-all", 5),
        ("xp-weekly", 5),
        ("quizzes", 2),
        ("sales-by-team", 2),
        ("learners-xp", 3),
    ]
    weekly = (await client.get("/v1/leaderboards/xp-weekly")).json()
    assert weekly == {
        "id": "xp-weekly",
        "name": "Weekly xp",
        "description": "",
        "metric": {"currency": "xp"},
        "window": "week",
        "time_zone": "America/New_York",
        "week_start": "monday",
        "scope": "players",
        "min_score": None,
        "current": WEEK,
        "participants": 5,
    }
    groups = (await client.get("/v1/leaderboards/sales-by-team")).json()
    assert (groups["scope"], groups["time_zone"], groups["min_score"]) == (
        "group:team",
        "UTC",
        None,
    )
    assert (await client.get("/v1/leaderboards/quizzes")).json()["min_score"] == 2.0


# --- around me --------------------------------------------------------------------------------


async def test_around_me_gives_k_neighbours_each_side_clipped_at_the_top(
    client: httpx.AsyncClient, league: League
) -> None:
    expected = league.xp_all()
    top = await _around(client, "xp-all", league.bob, around=1)
    assert top == {
        "board": "xp-all",
        "window": ALL_TIME,
        "subject": league.bob,
        "entry": expected[0],
        "neighbours": expected[0:2],
    }
    by_identity = await _around(client, "xp-all", "lms:bob", around=1)
    assert by_identity == top


async def test_around_me_in_the_middle_and_at_the_bottom(
    client: httpx.AsyncClient, league: League
) -> None:
    expected = league.xp_all()
    third = expected[2]["subject"]
    middle = await _around(client, "xp-all", third, around=1)
    assert middle["entry"] == expected[2]
    assert middle["neighbours"] == expected[1:4]
    wide = await _around(client, "xp-all", third, around=2)
    assert wide["neighbours"] == expected[0:5]
    bottom = await _around(client, "xp-all", league.erin, around=2)
    assert bottom["entry"] == expected[4]
    assert bottom["neighbours"] == expected[2:5]
    alone = await _around(client, "xp-all", league.erin, around=0)
    assert alone["neighbours"] == [expected[4]]


async def test_a_player_without_a_score_has_no_entry_and_an_unknown_one_is_404(
    client: httpx.AsyncClient, league: League
) -> None:
    unranked = await _around(client, "xp-all", "lms:frank", around=3)
    assert (unranked["subject"], unranked["entry"], unranked["neighbours"]) == (
        league.frank,
        None,
        [],
    )
    missing = await client.get("/v1/leaderboards/xp-all/standings/lms:nobody")
    assert missing.status_code == 404
    assert "lms:nobody" in missing.json()["detail"]
    too_wide = await client.get(f"/v1/leaderboards/xp-all/standings/{league.bob}?around=51")
    assert too_wide.status_code == 422
    assert too_wide.json()["errors"][0]["field"] == "query.around"


# --- groups, minimums, filters, a player's ranks ----------------------------------------------


async def test_a_group_board_ranks_groups_by_the_sum_of_their_members(
    client: httpx.AsyncClient, league: League
) -> None:
    body = await _standings(client, "sales-by-team")
    assert body["participants"] == 2
    assert body["items"] == [
        _entry(1, "red", 150.0, _at(1, 10)),
        _entry(2, "blue", 120.0, _at(1, 11)),
    ]
    blue = await _around(client, "sales-by-team", "blue", around=1)
    assert blue["entry"] == _entry(2, "blue", 120.0, _at(1, 11))
    assert [e["subject"] for e in blue["neighbours"]] == ["red", "blue"]
    nobody = await _around(client, "sales-by-team", "green", around=1)
    assert (nobody["entry"], nobody["neighbours"]) == (None, [])


async def test_a_players_ranks_cover_every_board_and_their_groups_place(
    client: httpx.AsyncClient, league: League
) -> None:
    response = await client.get("/v1/players/lms:alice/ranks")
    assert response.status_code == 200, response.text
    ranks = response.json()
    assert [
        (r["board"], r["subject"], r["rank"], r["score"], r["participants"]) for r in ranks
    ] == [
        ("xp-all", league.alice, 2, 30.0, 5),
        ("xp-weekly", league.alice, 2, 30.0, 5),
        ("quizzes", league.alice, 1, 3.0, 2),
        ("sales-by-team", "red", 1, 150.0, 2),
        ("learners-xp", league.alice, 1, 30.0, 3),
    ]
    assert [r["name"] for r in ranks] == [
        "All-time xp",
        "Weekly xp",
        "Quizzes passed",
        "Deal value by team",
        "Learners' xp",
    ]
    assert ranks[1]["window"] == WEEK
    assert ranks[0]["window"] == ALL_TIME
    frank = (await client.get(f"/v1/players/{league.frank}/ranks")).json()
    assert [(r["board"], r["rank"], r["score"]) for r in frank] == [
        (board, None, None) for board in BOARDS
    ]
    assert (await client.get("/v1/players/lms:nobody/ranks")).status_code == 404


async def test_subjects_below_the_minimum_score_are_not_listed(
    client: httpx.AsyncClient, league: League
) -> None:
    body = await _standings(client, "quizzes")
    assert body["participants"] == 2
    assert body["items"] == [
        _entry(1, league.alice, 3.0, _at(1, 9)),
        _entry(2, league.bob, 2.0, _at(1, 9)),
    ]
    carol = await _around(client, "quizzes", "lms:carol", around=2)
    assert (carol["entry"], carol["neighbours"]) == (None, [])
    ranks = (await client.get("/v1/players/lms:carol/ranks")).json()
    assert [(r["rank"], r["score"]) for r in ranks if r["board"] == "quizzes"] == [(None, None)]


async def test_a_where_filter_keeps_other_players_off_the_board(
    client: httpx.AsyncClient, league: League
) -> None:
    body = await _standings(client, "learners-xp")
    assert body["participants"] == 3
    assert body["items"] == [
        _entry(1, league.alice, 30.0, _at(1, 10)),
        _entry(2, league.carol, 20.0, _at(1, 8)),
        _entry(3, league.erin, 10.0, _at(1, 11)),
    ]


# --- windows ----------------------------------------------------------------------------------


async def test_a_closed_week_keeps_its_final_standings_and_a_new_week_starts_empty(
    client: httpx.AsyncClient, container: Container, clock: FakeClock
) -> None:
    await _publish(client)
    clock.now = datetime(2026, 6, 5, 12, tzinfo=UTC)  # Friday of the week of 2026-06-01
    ids = await _ingest(
        client,
        _lesson("a1", "alice", _at(2, 12)),
        _lesson("a2", "alice", _at(3, 12)),
        _lesson("b1", "bob", _at(4, 12)),
        _lesson("c1", "carol", _at(4, 13)),
    )
    _settle(container)
    # Monday 01:00 in New York: the week ended an hour ago, the grace (2 hours) is running.
    clock.now = datetime(2026, 6, 8, 5, tzinfo=UTC)
    assert (await _standings(client, "xp-weekly", window="previous"))["window"]["state"] == "open"
    # Sunday 16:00 in New York, received within the grace: it counts last week.
    await _ingest(client, _lesson("b2", "bob", _at(7, 20)), _lesson("b3", "bob", _at(7, 20)))
    _settle(container)
    clock.now = datetime(2026, 6, 8, 6, 30, tzinfo=UTC)  # the grace is over
    # Sunday 17:00 in New York, received after the grace: it counts in no week.
    await _ingest(client, _lesson("a3", "alice", _at(7, 21)))
    _settle(container)

    final = [
        _entry(1, ids["bob"], 30.0, _at(7, 20)),
        _entry(2, ids["alice"], 20.0, _at(3, 12)),
        _entry(3, ids["carol"], 10.0, _at(4, 13)),
    ]
    closed = {"key": "2026-06-01", "state": "closed"} | {
        "start": "2026-06-01T04:00:00Z",
        "end": "2026-06-08T04:00:00Z",
    }
    previous = await _standings(client, "xp-weekly", window="previous")
    assert previous == {
        "board": "xp-weekly",
        "window": closed,
        "participants": 3,
        "items": final,
        "next_cursor": None,
    }
    # Closed windows are answered from SQL: the projection may forget them.
    report = (await client.post("/v1/leaderboards/reconcile")).json()
    assert report["retired"] == [f"{TENANT}/xp-weekly/2026-06-01"]
    assert await _standings(client, "xp-weekly", window="2026-06-01") == previous
    paged = await _standings(client, "xp-weekly", window="previous", limit=2)
    assert paged["items"] == final[:2]
    rest = await _standings(
        client, "xp-weekly", window="previous", limit=2, cursor=paged["next_cursor"]
    )
    assert (rest["items"], rest["next_cursor"]) == (final[2:], None)
    bob = await _around(client, "xp-weekly", ids["bob"], window="previous", around=5)
    assert (bob["entry"], bob["neighbours"]) == (final[0], final)

    current = await _standings(client, "xp-weekly")
    assert current["window"] == {
        "key": "2026-06-08",
        "state": "open",
        "start": "2026-06-08T04:00:00Z",
        "end": "2026-06-15T04:00:00Z",
    }
    assert (current["participants"], current["items"]) == (0, [])
    # The late event still counts all time (at 21:00 Sunday: after bob's 20:00).
    everyone = await _standings(client, "xp-all")
    assert [(e["subject"], e["score"]) for e in everyone["items"]] == [
        (ids["bob"], 30.0),
        (ids["alice"], 30.0),
        (ids["carol"], 10.0),
    ]

    history = (await client.get("/v1/leaderboards/xp-weekly/windows", params={"winners": 2})).json()
    assert history == [{"window": closed, "participants": 3, "winners": final[:2]}]


async def test_around_me_on_a_closed_window_answers_as_it_did_while_open(
    client: httpx.AsyncClient, container: Container, clock: FakeClock
) -> None:
    await _publish(client)
    ids = await _ingest(
        client,
        _lesson("a1", "alice", _at(1, 6)),
        _lesson("a2", "alice", _at(1, 7)),
        _lesson("b1", "bob", _at(1, 8)),
        _lesson("c1", "carol", _at(1, 9)),
    )
    _settle(container)
    while_open = await _around(client, "xp-weekly", ids["alice"], around=1)
    assert [e["subject"] for e in while_open["neighbours"]] == [ids["alice"], ids["bob"]]
    clock.now = datetime(2026, 6, 9, 12, tzinfo=UTC)
    after = await _around(client, "xp-weekly", ids["alice"], window="2026-06-01", around=1)
    assert after["window"]["state"] == "closed"
    assert after["neighbours"] == while_open["neighbours"]


async def test_a_future_window_is_empty_and_bad_windows_and_boards_are_404(
    client: httpx.AsyncClient, league: League
) -> None:
    future = await _standings(client, "xp-weekly", window="2026-06-15")
    assert future["window"] == {
        "key": "2026-06-15",
        "state": "future",
        "start": "2026-06-15T04:00:00Z",
        "end": "2026-06-22T04:00:00Z",
    }
    assert (future["participants"], future["items"], future["next_cursor"]) == (0, [], None)
    unknown = await client.get("/v1/leaderboards/nope/standings")
    assert unknown.status_code == 404
    assert unknown.headers["content-type"] == "application/problem+json"
    assert unknown.json()["detail"] == (
        "no leaderboard 'nope' in the live rule set "
        "(known: learners-xp, quizzes, sales-by-team, xp-all, xp-weekly)"
    )
    assert (await client.get("/v1/leaderboards/nope")).status_code == 404
    assert (await client.get("/v1/leaderboards/nope/windows")).status_code == 404
    for bad in ("2026-06-02", "2026-06", "june"):  # 2026-06-02 is a Tuesday
        response = await client.get("/v1/leaderboards/xp-weekly/standings", params={"window": bad})
        assert response.status_code == 404, bad
        assert response.json()["detail"] == (
            f"window {bad!r}: this board's windows are named the date of the week's first day, "
            "e.g. 2026-11-30 (or current, previous)"
        )
    quarter = await client.get("/v1/leaderboards/xp-all/standings", params={"window": "2026-Q2"})
    assert quarter.status_code == 404
    assert "this board's windows are named all" in quarter.json()["detail"]
    no_previous = await client.get("/v1/leaderboards/xp-all/standings?window=previous")
    assert no_previous.status_code == 404
    assert no_previous.json()["detail"] == "leaderboard 'xp-all' has one window (all)"


@pytest.mark.parametrize("limit", [0, 1001, -1])
async def test_a_page_size_out_of_range_is_refused_naming_limit(
    client: httpx.AsyncClient, league: League, limit: int
) -> None:
    response = await client.get("/v1/leaderboards/xp-all/standings", params={"limit": limit})
    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == ["query.limit"]


@pytest.mark.parametrize("cursor", ["garbage", encode_cursor("abc"), encode_cursor("-1")])
async def test_a_forged_cursor_is_refused(
    client: httpx.AsyncClient, league: League, cursor: str
) -> None:
    response = await client.get("/v1/leaderboards/xp-all/standings", params={"cursor": cursor})
    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == ["cursor"]


async def test_a_cursor_past_the_end_gives_an_empty_page(
    client: httpx.AsyncClient, league: League
) -> None:
    page = await _standings(client, "xp-all", cursor=encode_cursor("5"))
    assert (page["participants"], page["items"], page["next_cursor"]) == (5, [], None)


# --- ETags ------------------------------------------------------------------------------------


async def test_unchanged_standings_are_304_and_a_scored_event_changes_the_etag(
    client: httpx.AsyncClient, container: Container, league: League
) -> None:
    first = await client.get("/v1/leaderboards/xp-all/standings")
    etag = first.headers["etag"]
    assert etag.startswith('W/"')
    again = await client.get("/v1/leaderboards/xp-all/standings", headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == etag
    other_page = await client.get(
        "/v1/leaderboards/xp-all/standings", params={"limit": 2}, headers={"If-None-Match": etag}
    )
    assert other_page.status_code == 200
    around = await client.get(f"/v1/leaderboards/xp-all/standings/{league.bob}")
    cached = await client.get(
        f"/v1/leaderboards/xp-all/standings/{league.bob}",
        headers={"If-None-Match": around.headers["etag"]},
    )
    assert cached.status_code == 304

    await _ingest(client, _lesson("e2", "erin", _at(1, 11, 30)))
    _settle(container)
    changed = await client.get("/v1/leaderboards/xp-all/standings", headers={"If-None-Match": etag})
    assert changed.status_code == 200
    assert changed.headers["etag"] != etag
    assert changed.json()["items"][4] == _entry(5, league.erin, 20.0, _at(1, 11, 30))
    moved = await client.get(
        f"/v1/leaderboards/xp-all/standings/{league.bob}",
        headers={"If-None-Match": around.headers["etag"]},
    )
    assert moved.status_code == 200


async def test_an_opt_out_changes_the_etag_of_the_standings(
    client: httpx.AsyncClient, league: League
) -> None:
    first = await client.get("/v1/leaderboards/xp-all/standings")
    await client.put(f"/v1/players/{league.alice}/leaderboard-privacy", json={"hidden": True})
    after = await client.get(
        "/v1/leaderboards/xp-all/standings", headers={"If-None-Match": first.headers["etag"]}
    )
    assert after.status_code == 200
    assert after.json()["items"][1]["subject"] is None


# --- privacy ----------------------------------------------------------------------------------


async def test_an_opted_out_player_is_masked_for_others_and_sees_themselves(
    client: httpx.AsyncClient, league: League
) -> None:
    expected = league.xp_all()
    put = await client.put("/v1/players/lms:alice/leaderboard-privacy", json={"hidden": True})
    assert put.status_code == 200, put.text
    assert put.json() == {"player_id": league.alice, "hidden": True}

    masked = dict(expected[1], subject=None, hidden=True)
    body = await _standings(client, "xp-all")
    assert body["items"] == [expected[0], masked, *expected[2:]]
    assert body["participants"] == 5
    assert (await _around(client, "xp-all", league.bob, around=1))["neighbours"] == [
        expected[0],
        masked,
    ]
    own = await _around(client, "xp-all", "lms:alice", around=1)
    assert own["entry"] == expected[1]
    assert own["neighbours"] == expected[0:3]
    ranks = (await client.get("/v1/players/lms:alice/ranks")).json()
    assert (ranks[0]["subject"], ranks[0]["rank"], ranks[0]["score"]) == (league.alice, 2, 30.0)
    # Groups are never masked: a team is not a person.
    groups = await _standings(client, "sales-by-team")
    assert [e["subject"] for e in groups["items"]] == ["red", "blue"]

    back = await client.put(
        f"/v1/players/{league.alice}/leaderboard-privacy", json={"hidden": False}
    )
    assert back.json() == {"player_id": league.alice, "hidden": False}
    assert (await _standings(client, "xp-all"))["items"] == expected


async def test_privacy_requests_are_validated(client: httpx.AsyncClient, league: League) -> None:
    missing = await client.put("/v1/players/lms:nobody/leaderboard-privacy", json={"hidden": True})
    assert missing.status_code == 404
    extra = await client.put(
        "/v1/players/lms:alice/leaderboard-privacy", json={"hidden": True, "boards": ["xp-all"]}
    )
    assert extra.status_code == 422
    assert [e["field"] for e in extra.json()["errors"]] == ["boards"]


# --- retractions and adjustments --------------------------------------------------------------


async def test_a_retracted_event_leaves_every_board_it_counted_on(
    client: httpx.AsyncClient, container: Container, league: League
) -> None:
    retracted = await client.post(
        f"/v1/events/{league.ids['event:a3']}/retract", json={"reason": "duplicate"}
    )
    assert retracted.status_code == 200, retracted.text
    deal = await client.post(
        f"/v1/events/{league.ids['event:sa']}/retract", json={"reason": "cancelled"}
    )
    assert deal.status_code == 200, deal.text
    quiz = await client.post(
        f"/v1/events/{league.ids['event:qb2']}/retract", json={"reason": "cheated"}
    )
    assert quiz.status_code == 200, quiz.text
    container.leaderboards.sync()

    expected = league.xp_all()
    # alice is down to 20, reached at 08:00 (her latest remaining lesson): tied with carol and
    # dave at the same instant, so the subject ids decide.
    tied = sorted([league.alice, league.carol, league.dave])
    assert (await _standings(client, "xp-all"))["items"] == [
        expected[0],
        *[_entry(2 + i, s, 20.0, _at(1, 8)) for i, s in enumerate(tied)],
        dict(expected[4], rank=5),
    ]
    assert (await _standings(client, "sales-by-team"))["items"] == [
        _entry(1, "blue", 120.0, _at(1, 11)),
        _entry(2, "red", 50.0, _at(1, 10)),
    ]
    quizzes = await _standings(client, "quizzes")  # bob fell below the minimum
    assert quizzes["items"] == [_entry(1, league.alice, 3.0, _at(1, 9))]
    assert quizzes["participants"] == 1


async def test_a_manual_adjustment_moves_currency_boards_only(
    client: httpx.AsyncClient, container: Container, clock: FakeClock, league: League
) -> None:
    response = await client.post(
        "/v1/players/lms:erin/adjustments",
        json={"currency": "xp", "amount": 25, "reason": "workshop host"},
    )
    assert response.status_code == 201, response.text
    coins = await client.post(
        "/v1/players/lms:frank/adjustments",
        json={"currency": "coins", "amount": 5, "reason": "prize"},
    )
    assert coins.status_code == 201, coins.text
    container.leaderboards.sync()
    now = clock.now.isoformat().replace("+00:00", "Z")
    erin = _entry(1, league.erin, 35.0, now)
    expected = league.xp_all()
    assert (await _standings(client, "xp-all"))["items"] == [
        erin,
        *[dict(e, rank=e["rank"] + 1) for e in expected[:4]],
    ]
    assert (await _standings(client, "xp-weekly"))["items"][0] == erin
    assert (await _standings(client, "learners-xp"))["items"][0] == erin
    assert (await _standings(client, "quizzes"))["participants"] == 2
    frank = (await client.get("/v1/players/lms:frank/ranks")).json()
    assert [r["rank"] for r in frank] == [None] * len(BOARDS)


# --- reconciliation ---------------------------------------------------------------------------


async def test_reconcile_reports_and_repairs_drift_of_the_projection(
    client: httpx.AsyncClient, container: Container, league: League
) -> None:
    clean = (await client.post("/v1/leaderboards/reconcile")).json()
    assert clean == {
        "windows": 5,
        "subjects": 5 + 5 + 2 + 2 + 3,
        "missing": 0,
        "extra": 0,
        "wrong": 0,
        "repaired": [],
        "retired": [],
    }
    truth = {board: await _standings(client, board) for board in BOARDS}

    projection = container.leaderboards.projection
    all_time = BoardKey(TENANT, "xp-all", "all")
    projection.apply(
        [
            Change(all_time, league.erin, 99 * SCALE, 0),  # wrong score
            Change(BoardKey(TENANT, "quizzes", "all"), "plr_ghost", 5 * SCALE, 0),  # extra
        ],
        projection.cursor(),
    )
    projection.drop(BoardKey(TENANT, "xp-weekly", "2026-06-01"))  # five missing
    assert (await _standings(client, "xp-all"))["items"][0]["subject"] == league.erin
    assert (await _standings(client, "xp-weekly"))["items"] == []

    repaired = await client.post("/v1/leaderboards/reconcile")
    assert repaired.status_code == 200
    assert repaired.json() == {
        "windows": 5,
        "subjects": 17,
        "missing": 5,
        "extra": 1,
        "wrong": 1,
        "repaired": [
            f"{TENANT}/xp-all/all",
            f"{TENANT}/xp-weekly/2026-06-01",
            f"{TENANT}/quizzes/all",
        ],
        "retired": [],
    }
    assert {board: await _standings(client, board) for board in BOARDS} == truth
    again = (await client.post("/v1/leaderboards/reconcile")).json()
    assert (again["missing"], again["extra"], again["wrong"], again["repaired"]) == (0, 0, 0, [])


# --- scopes -----------------------------------------------------------------------------------


async def test_reading_boards_needs_read_and_changing_them_needs_more(
    client_for: ClientFactory, container: Container, league: League
) -> None:
    writer = client_for(new_key(container, Scope.EVENTS_WRITE))
    reader = client_for(new_key(container, Scope.READ))
    players = client_for(new_key(container, Scope.PLAYERS_WRITE))
    reads = [
        "/v1/leaderboards",
        "/v1/leaderboards/xp-all",
        "/v1/leaderboards/xp-all/standings",
        f"/v1/leaderboards/xp-all/standings/{league.bob}",
        "/v1/leaderboards/xp-all/windows",
        "/v1/players/lms:bob/ranks",
        "/v1/leaderboards/xp-all/stream",
    ]
    for path in reads:
        refused = await writer.get(path)
        assert refused.status_code == 403, path
        assert refused.json()["detail"] == "this API key lacks the 'read' scope"
    for path in reads[:-1]:  # the stream never ends: ASGITransport would wait for it
        assert (await reader.get(path)).status_code == 200, path

    privacy = f"/v1/players/{league.bob}/leaderboard-privacy"
    for client in (writer, reader):
        assert (await client.put(privacy, json={"hidden": True})).status_code == 403
    assert (await players.put(privacy, json={"hidden": True})).status_code == 200
    for client in (writer, reader, players):
        assert (await client.post("/v1/leaderboards/reconcile")).status_code == 403
    assert (await client_for(None).get("/v1/leaderboards")).status_code == 401


# --- rule-set changes -------------------------------------------------------------------------


async def test_publishing_a_new_version_refreshes_the_boards(
    client: httpx.AsyncClient, container: Container, league: League
) -> None:
    stricter = RULES.replace("min_score: 2", "min_score: 3").replace(
        "  - id: learners-xp\n", "  - id: gone\n"
    )
    await _publish(client, stricter)
    assert [b["id"] for b in (await client.get("/v1/leaderboards")).json()] == [
        "xp-all",
        "xp-weekly",
        "quizzes",
        "sales-by-team",
        "gone",
    ]
    quizzes = await _standings(client, "quizzes")
    assert quizzes["items"] == [_entry(1, league.alice, 3.0, _at(1, 9))]
    assert (await _standings(client, "gone"))["items"] == []
    removed = await client.get("/v1/leaderboards/learners-xp/standings")
    assert removed.status_code == 404


async def test_the_window_history_counts_only_listed_participants(
    client: httpx.AsyncClient, league: League
) -> None:
    history = (await client.get("/v1/leaderboards/quizzes/windows")).json()
    assert history == [
        {
            "window": ALL_TIME,
            "participants": 2,
            "winners": [
                _entry(1, league.alice, 3.0, _at(1, 9)),
                _entry(2, league.bob, 2.0, _at(1, 9)),
            ],
        }
    ]


async def test_an_event_slightly_ahead_of_the_clock_counts_once_its_week_begins(
    client: httpx.AsyncClient, container: Container, clock: FakeClock
) -> None:
    await _publish(client)
    clock.now = datetime(2026, 6, 8, 3, 55, tzinfo=UTC)  # Sunday 23:55 in New York
    ids = await _ingest(client, _lesson("b1", "bob", _at(8, 4, 5)))  # Monday 00:05 there
    _settle(container)
    clock.now = datetime(2026, 6, 8, 4, 10, tzinfo=UTC)
    _settle(container)
    week = await _standings(client, "xp-weekly")
    assert week["window"]["key"] == "2026-06-08"
    assert week["items"] == [_entry(1, ids["bob"], 10.0, _at(8, 4, 5))]


# --- the hot path (api/hot_reads.py) answers exactly as the routes do -----------------------
#
# Every request below goes once through the app as served (hot path first) and once through
# an app without it (the routes alone): status, headers and body must be the same bytes, for
# plain reads, conditional ones, and every kind of request the hot path leaves to the route.

_COMPARED = ("etag", "cache-control", "content-type", "content-length")


@pytest.fixture
async def routed(container: Container, admin_key: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the app without the hot path: every request goes to the routes."""
    app = create_app(container)
    app.user_middleware = [m for m in app.user_middleware if m.cls is not HotReads]  # type: ignore[comparison-overlap]
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://plaudit.test",
        headers={"Authorization": f"Bearer {admin_key}"},
    ) as made:
        yield made


def _requests(league: League) -> list[tuple[str, dict[str, str]]]:
    bob, frank = league.bob, league.frank
    standings = "/v1/leaderboards/{}/standings"
    return [
        # plain: the hot path answers
        (standings.format("xp-all"), {}),
        (standings.format("xp-all"), {"limit": "2"}),
        (standings.format("xp-all"), {"limit": "2", "cursor": encode_cursor("2")}),
        (standings.format("xp-all"), {"limit": "1000", "unknown": "ignored"}),
        (standings.format("xp-weekly"), {"window": "current"}),
        (standings.format("xp-weekly"), {"window": "previous"}),
        (standings.format("xp-weekly"), {"window": "2026-06-01"}),
        (standings.format("xp-weekly"), {"window": "2030-01-07"}),
        (standings.format("quizzes"), {}),
        (standings.format("sales-by-team"), {}),
        (standings.format("learners-xp"), {}),
        (f"{standings.format('xp-all')}/{bob}", {}),
        (f"{standings.format('xp-all')}/{bob}", {"around": "0"}),
        (f"{standings.format('xp-all')}/{bob}", {"around": "50"}),
        (f"{standings.format('xp-all')}/lms:bob", {}),
        (f"{standings.format('xp-all')}/{frank}", {}),
        (f"{standings.format('xp-weekly')}/{bob}", {"window": "previous"}),
        (f"{standings.format('sales-by-team')}/red", {}),
        (f"{standings.format('sales-by-team')}/purple", {}),
        # left to the route: refused, coerced, or unknown
        (standings.format("nope"), {}),
        (f"{standings.format('nope')}/{bob}", {}),
        (f"{standings.format('xp-all')}/lms:nobody", {}),
        (standings.format("xp-all"), {"limit": "0"}),
        (standings.format("xp-all"), {"limit": "1001"}),
        (standings.format("xp-all"), {"limit": "02"}),
        (standings.format("xp-all"), {"limit": "x"}),
        (standings.format("xp-all"), {"cursor": "not-a-cursor"}),
        (standings.format("xp-all"), {"window": "x" * 17}),
        (standings.format("xp-all"), {"window": ""}),
        (standings.format("xp-weekly"), {"window": "someday"}),
        (f"{standings.format('xp-all')}/{bob}", {"around": "51"}),
        (f"{standings.format('xp-all')}/{bob}", {"around": "-1"}),
    ]


async def _same(
    served: httpx.AsyncClient, routed: httpx.AsyncClient, path: str, **options: object
) -> httpx.Response:
    hot = await served.get(path, **options)  # type: ignore[arg-type]
    plain = await routed.get(path, **options)  # type: ignore[arg-type]
    assert (hot.status_code, hot.content) == (plain.status_code, plain.content), path
    for name in _COMPARED:
        assert hot.headers.get(name) == plain.headers.get(name), (path, name)
    return hot


async def test_every_read_answers_as_the_route_does(
    client: httpx.AsyncClient, routed: httpx.AsyncClient, league: League
) -> None:
    statuses = set()
    for path, params in _requests(league):
        response = await _same(client, routed, path, params=params)
        statuses.add(response.status_code)
        if response.status_code == 200:
            etag = response.headers["etag"]
            cached = await _same(
                client, routed, path, params=params, headers={"If-None-Match": f'"x", {etag}'}
            )
            assert cached.status_code == 304
    assert statuses == {200, 404, 422}
    # A repeated parameter: the route takes one of them, and so must the answer.
    await _same(client, routed, "/v1/leaderboards/xp-all/standings?limit=1&limit=3")


async def test_credentials_the_hot_path_does_not_know_go_to_the_route(
    client_for: ClientFactory, routed: httpx.AsyncClient, container: Container, league: League
) -> None:
    ingest_only = new_key(container, Scope.EVENTS_WRITE)
    reader = new_key(container, Scope.READ)
    path = "/v1/leaderboards/xp-all/standings"
    for headers, status in (
        ({"Authorization": ""}, 401),
        ({"Authorization": "Basic abc"}, 401),
        ({"Authorization": "Bearer plk_unknown"}, 401),
        ({"Authorization": f"Bearer {ingest_only}"}, 403),  # checked by the route, cached
        ({"Authorization": f"Bearer {ingest_only}"}, 403),  # cached: refused all the same
        ({"Authorization": f"Bearer {reader}"}, 200),  # first use: checked by the route
        ({"Authorization": f"Bearer {reader}"}, 200),  # then cached: the hot path
    ):
        response = await _same(client_for(None), routed, path, headers=headers)
        assert response.status_code == status, (headers, response.text)


async def test_plain_reads_never_reach_the_router(
    client: httpx.AsyncClient, league: League, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The routes call the module's functions; the hot path holds its own references."""
    routed: list[str] = []
    for name in ("answer_standings", "answer_around"):
        original = getattr(routes, name)

        async def counted(*args: object, _original: object = original, _name: str = name) -> object:
            routed.append(_name)
            return await _original(*args)  # type: ignore[operator]

        monkeypatch.setattr(routes, name, counted)
    await client.get("/v1/leaderboards/xp-all/standings?limit=3")
    await client.get(f"/v1/leaderboards/xp-all/standings/{league.bob}?around=2")
    assert routed == []
    ok = await client.get("/v1/leaderboards/xp-all/standings?limit=03")  # coerced by the route
    assert ok.status_code == 200
    assert [item["rank"] for item in ok.json()["items"]] == [1, 2, 3]
    await client.get(f"/v1/leaderboards/xp-all/standings/{league.bob}?around=02")
    assert routed == ["answer_standings", "answer_around"]
