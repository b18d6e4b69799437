from __future__ import annotations

import anyio
import httpx
import pytest

from plaudit.bootstrap import Container
from tests.api.test_rulesets_and_scoring import PROGRAM
from tests.support.events import event

pytestmark = pytest.mark.anyio


async def test_backfill_applies_gains_at_once_and_holds_losses_for_confirmation(
    client: httpx.AsyncClient, container: Container
) -> None:
    # Events logged before any rule set: nothing scores them until a backfill.
    await client.post("/v1/events", json=[event(f"l{i}") for i in range(3)])
    container.scoring.score_pending()
    created = await client.post("/v1/rulesets", json={"name": "P", "source": PROGRAM})
    ruleset = created.json()["id"]
    first = await client.post(f"/v1/rulesets/{ruleset}/publish", json={"backfill": True})
    assert first.status_code == 201, first.text
    report = first.json()["backfill"]
    assert report["status"] == "nothing-pending"
    assert report["applied"]["points"] == [
        {"player_id": report["applied"]["points"][0]["player_id"], "currency": "xp", "amount": 30.0}
    ]
    assert [b["badge_id"] for b in report["applied"]["badges"]] == ["scholar"]
    standing = (await client.get("/v1/players/lms:alice")).json()["standing"]
    assert standing["balances"] == {"xp": 30.0}
    assert [b["badge_id"] for b in standing["badges"]] == ["scholar"]

    # A stricter version: the losses are only proposed.
    stricter = PROGRAM.replace("award: {xp: 10}", "award: {xp: 5}").replace(
        "at_least: 2}}", "at_least: 5}}"
    )
    await client.put(f"/v1/rulesets/{ruleset}/draft", json={"source": stricter})
    second = (await client.post(f"/v1/rulesets/{ruleset}/publish", json={"backfill": True})).json()[
        "backfill"
    ]
    assert second["status"] == "pending"
    assert second["applied"] == {"points": [], "badges": []}
    assert [p["amount"] for p in second["pending"]["points"]] == [-15.0]
    assert [b["badge_id"] for b in second["pending"]["badges"]] == ["scholar"]
    unchanged = (await client.get("/v1/players/lms:alice")).json()["standing"]
    assert unchanged["balances"] == {"xp": 30.0}
    assert [b["badge_id"] for b in unchanged["badges"]] == ["scholar"]

    confirmed = await client.post(f"/v1/rulesets/backfills/{second['id']}/confirm")
    assert confirmed.status_code == 200, confirmed.text
    assert confirmed.json()["status"] == "confirmed"
    after = (await client.get("/v1/players/lms:alice")).json()["standing"]
    assert after["balances"] == {"xp": 15.0}
    assert after["badges"] == []
    trail = (await client.get("/v1/issuance")).json()["items"]
    assert [t["action"] for t in trail] == ["issued", "revoked"]
    again = await client.post(f"/v1/rulesets/backfills/{second['id']}/confirm")
    assert again.status_code == 409
    assert (await client.get("/v1/rulesets/backfills/bf_nope")).status_code == 404

    # New events continue under the new version, on top of the backfilled state.
    await client.post("/v1/events", json=[event("l9")])
    container.scoring.score_pending()
    latest = (await client.get("/v1/players/lms:alice")).json()["standing"]
    assert latest["balances"] == {"xp": 20.0}


async def test_a_backfill_confirmed_twice_at_once_takes_the_losses_once(
    client: httpx.AsyncClient, container: Container
) -> None:
    await client.post("/v1/events", json=[event(f"l{i}") for i in range(3)])
    ruleset = (await client.post("/v1/rulesets", json={"name": "P", "source": PROGRAM})).json()[
        "id"
    ]
    await client.post(f"/v1/rulesets/{ruleset}/publish", json={"backfill": True})
    stricter = PROGRAM.replace("award: {xp: 10}", "award: {xp: 5}")
    await client.put(f"/v1/rulesets/{ruleset}/draft", json={"source": stricter})
    published = await client.post(f"/v1/rulesets/{ruleset}/publish", json={"backfill": True})
    backfill = published.json()["backfill"]
    assert [p["amount"] for p in backfill["pending"]["points"]] == [-15.0]

    statuses: list[int] = []

    async def confirm() -> None:
        response = await client.post(f"/v1/rulesets/backfills/{backfill['id']}/confirm")
        statuses.append(response.status_code)

    async with anyio.create_task_group() as tasks:
        for _ in range(4):
            tasks.start_soon(confirm)
    assert sorted(statuses) == [200, 409, 409, 409]
    standing = (await client.get("/v1/players/lms:alice")).json()["standing"]
    assert standing["balances"] == {"xp": 15.0}
