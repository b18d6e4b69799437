"""Anti-cheat holds: a player over the program's daily limit has their events held for
review; an admin releases them (scored in order) or rejects them (retracted); every
decision is audited, and a replay ends where the reviews left things."""

from __future__ import annotations

from typing import Any

import anyio
import httpx
import pytest

from plaudit.bootstrap import Container
from tests.api.test_rulesets_and_scoring import _publish
from tests.support.events import event

pytestmark = pytest.mark.anyio

PROGRAM = """\
currencies: [xp]
rules:
  - {id: lesson, on: lesson.completed, award: {xp: 10}}
badges:
  - id: scholar
    name: Scholar
    criteria: {count: {on: lesson.completed, at_least: 5}}
holds: {events_per_day: 3}
"""


def day(n: int, actor: str = "alice", date: str = "2026-05-01") -> dict[str, Any]:
    return event(f"{actor}-{date}-{n}", actor=actor, occurred_at=f"{date}T10:{n:02d}:00Z")


async def standing(client: httpx.AsyncClient, who: str) -> dict[str, Any]:
    found: dict[str, Any] = (await client.get(f"/v1/players/lms:{who}")).json()["standing"]
    return found


async def test_a_player_over_the_daily_limit_is_held_and_released_in_order(
    client: httpx.AsyncClient, container: Container
) -> None:
    await _publish(client, PROGRAM)
    await client.post("/v1/events", json=[day(n) for n in range(6)] + [day(0, "bob")])
    container.scoring.score_pending()
    assert (await standing(client, "alice"))["balances"] == {"xp": 30.0}  # 3, then held
    assert (await standing(client, "bob"))["balances"] == {"xp": 10.0}
    queue = (await client.get("/v1/holds")).json()
    assert [(h["events"], h["reason"]) for h in queue] == [(3, "more than 3 events on 2026-05-01")]
    # Held means held: later events wait too, even on another day, until the review.
    await client.post("/v1/events", json=[day(0, date="2026-05-02")])
    container.scoring.score_pending()
    assert (await client.get("/v1/holds")).json()[0]["events"] == 4

    released = await client.post(f"/v1/holds/{queue[0]['player_id']}/release")
    assert released.json() == {"events": 4}
    after = await standing(client, "alice")
    assert after["balances"] == {"xp": 70.0}
    assert [b["badge_id"] for b in after["badges"]] == ["scholar"]  # earned in order
    assert (await client.get("/v1/holds")).json() == []
    # Cleared for the rest of that day: a further event scores at once.
    await client.post("/v1/events", json=[day(1, date="2026-05-02")])
    container.scoring.score_pending()
    assert (await standing(client, "alice"))["balances"] == {"xp": 80.0}
    log = (await client.get("/v1/audit", params={"action": "hold.release"})).json()["items"]
    assert log[0]["after"]["scored"] == 4

    container.scoring.replay()  # the review stands in a replay
    assert (await standing(client, "alice"))["balances"] == {"xp": 80.0}
    assert (await client.get("/v1/holds")).json() == []


async def test_a_hold_released_twice_at_once_is_scored_once(
    client: httpx.AsyncClient, container: Container
) -> None:
    await _publish(client, PROGRAM)
    await client.post("/v1/events", json=[day(n) for n in range(6)])
    container.scoring.score_pending()
    player_id = (await client.get("/v1/holds")).json()[0]["player_id"]
    statuses: list[int] = []

    async def release() -> None:
        statuses.append((await client.post(f"/v1/holds/{player_id}/release")).status_code)

    async with anyio.create_task_group() as tasks:
        for _ in range(4):
            tasks.start_soon(release)
    assert sorted(statuses) == [200, 404, 404, 404]
    assert (await standing(client, "alice"))["balances"] == {"xp": 60.0}


async def test_rejected_events_never_score_even_in_a_replay(
    client: httpx.AsyncClient, container: Container
) -> None:
    await _publish(client, PROGRAM)
    await client.post("/v1/events", json=[day(n) for n in range(5)])
    container.scoring.score_pending()
    queue = (await client.get("/v1/holds")).json()
    rejected = await client.post(
        f"/v1/holds/{queue[0]['player_id']}/reject", json={"reason": "scripted clicks"}
    )
    assert rejected.json() == {"events": 2}
    assert (await standing(client, "alice"))["balances"] == {"xp": 30.0}
    again = await client.post(
        f"/v1/events/{(await client.get('/v1/events')).json()['items'][4]['event_id']}/retract",
        json={"reason": "x"},
    )
    assert again.status_code == 409  # the rejected event is already retracted
    container.scoring.replay()
    assert (await standing(client, "alice"))["balances"] == {"xp": 30.0}
    assert (await client.get("/v1/holds")).json() == []
    audit = (await client.get("/v1/audit", params={"action": "hold.reject"})).json()["items"]
    assert audit[0]["after"]["reason"] == "scripted clicks"


async def test_reviews_need_a_held_player_and_an_admin(
    client: httpx.AsyncClient, container: Container
) -> None:
    await _publish(client, PROGRAM)
    await client.post("/v1/events", json=[day(0)])
    container.scoring.score_pending()
    assert (await client.post("/v1/holds/lms:alice/release")).status_code == 404
    assert (await client.post("/v1/holds/lms:nobody/release")).status_code == 404
    bad = await client.post("/v1/holds/lms:alice/reject", json={})
    assert bad.status_code == 422


MEDIAN = PROGRAM.replace("holds: {events_per_day: 3}", "holds: {median_multiple: 2, min_events: 3}")


async def test_a_player_far_above_the_previous_days_median_is_held(
    client: httpx.AsyncClient, container: Container
) -> None:
    await _publish(client, MEDIAN)
    first = [day(n, who) for who in ("alice", "bob", "carol") for n in range(2)]
    await client.post("/v1/events", json=first)  # 2026-05-01: everyone 2 events, median 2
    container.scoring.score_pending()
    second = [day(n, "alice", "2026-05-02") for n in range(5)]
    second += [day(n, "dan", "2026-05-02") for n in range(4)]
    await client.post("/v1/events", json=second)  # the limit is max(3, 2 * 2) = 4
    container.scoring.score_pending()
    queue = (await client.get("/v1/holds")).json()
    assert [(h["events"], h["reason"]) for h in queue] == [
        (1, "more than 2 times the previous day's median (2 events) on 2026-05-02")
    ]
    assert (await standing(client, "alice"))["balances"] == {"xp": 60.0}  # 2 + 4 scored
    assert (await standing(client, "dan"))["balances"] == {"xp": 40.0}
    # Late events of the first day (recomputed, the median would be 1.5 and the limit 3) do
    # not move the frozen median: a replay holds the same one event.
    await client.post("/v1/events", json=[day(9, who) for who in ("erin", "finn", "gus")])
    container.scoring.replay()
    assert [h["events"] for h in (await client.get("/v1/holds")).json()] == [1]
    assert (await standing(client, "alice"))["balances"] == {"xp": 60.0}


async def test_a_rule_awarding_one_player_too_often_holds_their_later_events(
    client: httpx.AsyncClient, container: Container
) -> None:
    rules = PROGRAM.replace("holds: {events_per_day: 3}", "holds: {rule_awards_per_day: 2}")
    await _publish(client, rules)
    await client.post("/v1/events", json=[day(n) for n in range(5)])
    container.scoring.score_pending()
    # The third award goes over: it stands, and the events after it wait for review.
    assert (await standing(client, "alice"))["balances"] == {"xp": 30.0}
    queue = (await client.get("/v1/holds")).json()
    assert [(h["events"], h["reason"]) for h in queue] == [
        (2, "rule 'lesson' awarded more than 2 times on 2026-05-01")
    ]
    await client.post(f"/v1/holds/{queue[0]['player_id']}/release")
    assert (await standing(client, "alice"))["balances"] == {"xp": 50.0}
    container.scoring.replay()
    assert (await standing(client, "alice"))["balances"] == {"xp": 50.0}
    assert (await client.get("/v1/holds")).json() == []
