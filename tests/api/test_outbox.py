"""Every effect others care about writes an outbox message in its own transaction: rule and
manual awards, revocations (by hand and by retraction), levels, points when asked for, and
a leaderboard window's closing — once each."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from plaudit.bootstrap import Container
from tests.api.test_rulesets_and_scoring import PROGRAM, _publish
from tests.conftest import FakeClock
from tests.support.events import event

pytestmark = pytest.mark.anyio

WEEKLY = (
    PROGRAM
    + """\
leaderboards:
  - id: weekly
    name: This week's xp
    metric: {currency: xp}
    window: week
    time_zone: Europe/Paris
"""
)


def told(container: Container) -> list[tuple[str, dict[str, Any]]]:
    with container.db.read() as uow:
        return [(m.type, m.data) for m in uow.outbox.after(0, 1000)]


async def test_manual_awards_revocations_and_retractions_are_told(
    client: httpx.AsyncClient, container: Container
) -> None:
    await _publish(client)
    await client.post("/v1/events", json=[event("1"), event("2")])
    container.scoring.score_pending()
    assert [t for t, _ in told(container)] == ["level.reached", "badge.awarded"]

    manual = await client.post(
        "/v1/badges/closer/awards",
        json={"player": "lms:alice", "reason": "closed the big one by phone"},
    )
    assert manual.status_code == 201, manual.text
    revoked = await client.post(
        f"/v1/awards/{manual.json()['id']}/revoke", json={"reason": "entered twice"}
    )
    assert revoked.status_code == 200, revoked.text
    events = (await client.get("/v1/events")).json()["items"]
    second = next(e["event_id"] for e in events if e["id"] == "2")
    await client.post(f"/v1/events/{second}/retract", json={"reason": "test data"})

    messages = told(container)[2:]
    assert [t for t, _ in messages] == ["badge.awarded", "badge.revoked", "badge.revoked"]
    awarded, by_hand, by_retraction = (d for _, d in messages)
    assert (awarded["badge_id"], awarded["source"]) == ("closer", "manual")
    assert awarded["awarded_by"].startswith("key_")
    assert (by_hand["badge_id"], by_hand["reason"]) == ("closer", "entered twice")
    assert (by_retraction["badge_id"], by_retraction["revoked_by"]) == ("scholar", "retraction")


async def test_points_are_told_only_while_a_subscription_wants_them(
    client: httpx.AsyncClient, container: Container
) -> None:
    await _publish(client)
    refused = await client.post("/v1/players/lms:alice/adjustments", json={})
    assert refused.status_code == 422  # and nothing told
    await client.post("/v1/events", json=[event("1")])
    container.scoring.score_pending()
    assert "points.awarded" not in {t for t, _ in told(container)}

    made = await client.post(
        "/v1/webhooks", json={"url": "https://example.com/h", "event_types": ["points.awarded"]}
    )
    await client.post("/v1/events", json=[event("2")])
    container.scoring.score_pending()
    adjusted = await client.post(
        "/v1/players/lms:alice/adjustments",
        json={"currency": "xp", "amount": 5, "reason": "helped a colleague"},
    )
    assert adjusted.status_code == 201, adjusted.text
    points = [d for t, d in told(container) if t == "points.awarded"]
    assert [(p["kind"], p["amount"]) for p in points] == [("rule", 10.0), ("adjustment", 5.0)]
    assert points[1]["reason"] == "helped a colleague"

    # Disabled, then deleted: no longer wanted.
    hook = f"/v1/webhooks/{made.json()['id']}"
    assert (await client.patch(hook, json={"enabled": False})).status_code == 200
    await client.post("/v1/events", json=[event("3")])
    container.scoring.score_pending()
    await client.patch(hook, json={"enabled": True})
    assert (await client.delete(hook)).status_code == 204
    await client.post("/v1/events", json=[event("4")])
    container.scoring.score_pending()
    assert len([t for t, _ in told(container) if t == "points.awarded"]) == 2


async def test_a_closed_window_is_announced_once_with_its_final_top(
    client: httpx.AsyncClient, container: Container, clock: FakeClock
) -> None:
    clock.now = datetime(2026, 6, 3, 12, 0, tzinfo=UTC)  # a Wednesday
    await _publish(client, WEEKLY)
    occurred = "2026-06-02T10:00:00Z"
    await client.post(
        "/v1/events",
        json=[
            event("1", occurred_at=occurred),
            event("2", occurred_at=occurred),
            event("3", actor="bob", occurred_at=occurred),
        ],
    )
    container.scoring.score_pending()
    container.leaderboards.sync()
    assert container.closings.announce() == []  # the week is still open

    clock.now = datetime(2026, 6, 8, 21, 59, tzinfo=UTC)  # ended, within a day's grace
    assert container.closings.announce() == []
    clock.now = datetime(2026, 6, 8, 22, 0, tzinfo=UTC)  # Tuesday 00:00 in Paris: final
    assert container.closings.announce() == ["weekly/2026-06-01"]
    assert container.closings.announce() == []  # once
    [data] = [d for t, d in told(container) if t == "leaderboard.window_closed"]
    assert (data["board_id"], data["window"], data["participants"]) == ("weekly", "2026-06-01", 2)
    assert [(e["rank"], e["score"]) for e in data["top"]] == [(1, 20.0), (2, 10.0)]
    assert data["ends_at"] == "2026-06-07T22:00:00Z"  # Monday 00:00 in Paris (summer time)
    clock.advance(timedelta(days=7))
    assert container.closings.announce() == []  # a week nobody played in has no winners
