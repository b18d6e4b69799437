from __future__ import annotations

import anyio
import httpx
import pytest

from plaudit.bootstrap import Container
from plaudit.domain.partitions import PARTITIONS
from plaudit.services.scoring import CURSOR, partition_cursor
from plaudit.store.sql import tables
from plaudit.store.sql.database import SqlUnitOfWork
from tests.support.events import event

pytestmark = pytest.mark.anyio

PROGRAM = """\
currencies: [xp, coins]
rules:
  - id: lesson
    on: lesson.completed
    award: {xp: 10}
  - id: deal
    on: deal.closed
    award: {coins: "event.properties.amount / 1000"}
levels:
  currency: xp
  thresholds: [{name: Novice, at: 0}, {name: Learner, at: 20}]
badges:
  - id: scholar
    name: Scholar
    criteria: {count: {on: lesson.completed, at_least: 2}}
  - id: closer
    name: Closer
    criteria: {count: {on: deal.closed, at_least: 3}}
"""


async def _publish(client: httpx.AsyncClient, source: str = PROGRAM) -> str:
    created = await client.post("/v1/rulesets", json={"name": "Program", "source": source})
    assert created.status_code == 201, created.text
    ruleset_id: str = created.json()["id"]
    published = await client.post(f"/v1/rulesets/{ruleset_id}/publish", json={"note": "first"})
    assert published.status_code == 201, published.text
    return ruleset_id


async def test_published_rules_score_ingested_events(
    client: httpx.AsyncClient, container: Container
) -> None:
    await _publish(client)
    batch = [event("1"), event("2"), event("3", type="deal.closed", properties={"amount": 12_500})]
    await client.post("/v1/events", json=batch)
    outcome = container.scoring.score_pending()
    assert outcome.events == 3
    player = (await client.get("/v1/players/lms:alice")).json()
    standing = player["standing"]
    assert standing["balances"] == {"xp": 20.0, "coins": 12.0}
    assert standing["level"]["name"] == "Learner"
    assert [b["badge_id"] for b in standing["badges"]] == ["scholar"]
    closer = next(p for p in standing["progress"] if p["badge_id"] == "closer")
    assert (closer["current"], closer["target"], closer["earned"]) == (1.0, 3.0, False)
    ledger = (await client.get("/v1/players/lms:alice/ledger")).json()["items"]
    assert [(e["rule_id"], e["currency"], e["amount"]) for e in ledger] == [
        ("lesson", "xp", 10.0),
        ("lesson", "xp", 10.0),
        ("deal", "coins", 12.0),
    ]
    assert all(e["ruleset"].endswith("@1") and e["event_id"] for e in ledger)


async def test_a_redelivered_event_never_applies_twice(
    client: httpx.AsyncClient, container: Container
) -> None:
    await _publish(client)
    await client.post("/v1/events", json=[event("1"), event("2")])
    container.scoring.score_pending()
    with container.db.write() as uow:  # rewind the log cursors: everything is delivered again
        for name in (CURSOR, *(partition_cursor(p) for p in range(PARTITIONS))):
            uow.scoring.set_cursor(name, 0)
        uow.commit()
    assert container.scoring.score_pending().events == 2
    standing = (await client.get("/v1/players/lms:alice")).json()["standing"]
    assert standing["balances"] == {"xp": 20.0}
    assert len(standing["badges"]) == 1
    with container.db.read() as uow:
        assert len(uow.scoring.ledger("default", standing["badges"][0]["player_id"], 0, 100)) == 2


async def test_a_failing_rule_is_recorded_and_scoring_goes_on(
    client: httpx.AsyncClient, container: Container
) -> None:
    await _publish(client)
    await client.post(
        "/v1/events", json=[event("d1", type="deal.closed"), event("l1"), event("l2")]
    )
    container.scoring.score_pending()
    errors = (await client.get("/v1/rule-errors")).json()["items"]
    assert [(e["rule_id"], e["event_id"] is not None) for e in errors] == [("deal", True)]
    assert "amount" in errors[0]["message"]
    standing = (await client.get("/v1/players/lms:alice")).json()["standing"]
    assert standing["balances"] == {"xp": 20.0}


async def test_events_before_any_rule_set_wait_for_a_backfill(
    client: httpx.AsyncClient, container: Container
) -> None:
    await client.post("/v1/events", json=[event("1")])
    assert container.scoring.score_pending().events == 1
    player = (await client.get("/v1/players/lms:alice")).json()
    assert player["standing"]["balances"] == {}
    assert player["standing"]["ruleset"] is None


async def test_invalid_rule_sets_are_never_published(client: httpx.AsyncClient) -> None:
    created = await client.post(
        "/v1/rulesets", json={"name": "Bad", "source": PROGRAM.replace("{xp: 10}", "{gold: 10}")}
    )
    ruleset_id = created.json()["id"]
    validation = (await client.post(f"/v1/rulesets/{ruleset_id}/validate")).json()
    assert validation["valid"] is False
    assert validation["problems"][0]["rule"] == "lesson"
    assert validation["problems"][0]["line"] == 5
    refused = await client.post(f"/v1/rulesets/{ruleset_id}/publish")
    assert refused.status_code == 422
    assert "unknown currency 'gold'" in refused.json()["errors"][0]["message"]
    assert (await client.get(f"/v1/rulesets/{ruleset_id}")).json()["versions"] == []


async def test_unknown_event_types_are_warned_about(client: httpx.AsyncClient) -> None:
    await client.post("/v1/events", json=[event("1")])
    created = await client.post("/v1/rulesets", json={"name": "P", "source": PROGRAM})
    validation = (await client.post(f"/v1/rulesets/{created.json()['id']}/validate")).json()
    assert validation["valid"] is True
    assert validation["warnings"] == [
        "no event of type 'deal.closed' has been received yet (a typo?)"
    ]


async def test_versions_are_immutable_diffable_and_can_be_rolled_back(
    client: httpx.AsyncClient,
) -> None:
    ruleset_id = await _publish(client)
    changed = PROGRAM.replace("award: {xp: 10}", "award: {xp: 15}")
    await client.put(f"/v1/rulesets/{ruleset_id}/draft", json={"source": changed})
    assert (await client.post(f"/v1/rulesets/{ruleset_id}/publish")).json()["version"] == 2
    diff = (await client.get(f"/v1/rulesets/{ruleset_id}/diff?from=1&to=2")).json()
    assert diff["changed"] == ["rule:lesson"]
    assert diff["added"] == diff["removed"] == []
    assert "+    award: {xp: 15}" in diff["text"]
    first = (await client.get(f"/v1/rulesets/{ruleset_id}/versions/1")).json()
    assert first["source"] == PROGRAM
    rolled = await client.post(f"/v1/rulesets/{ruleset_id}/rollback", json={"version": 1})
    assert rolled.json()["version"] == 3
    assert rolled.json()["note"] == "rollback to version 1"
    view = (await client.get(f"/v1/rulesets/{ruleset_id}")).json()
    assert view["live_version"] == 3
    versions = (await client.get(f"/v1/rulesets/{ruleset_id}/versions")).json()
    assert [(v["version"], v["note"]) for v in versions] == [
        (1, "first"),
        (2, ""),
        (3, "rollback to version 1"),
    ]
    assert (await client.get(f"/v1/rulesets/{ruleset_id}/versions/3")).json()["source"] == PROGRAM


async def test_versions_published_at_once_are_numbered_one_after_the_other(
    client: httpx.AsyncClient,
) -> None:
    ruleset_id = await _publish(client)
    numbers: list[int] = []

    async def publish() -> None:
        response = await client.post(f"/v1/rulesets/{ruleset_id}/publish")
        assert response.status_code == 201, response.text
        numbers.append(response.json()["version"])

    async with anyio.create_task_group() as tasks:
        for _ in range(4):
            tasks.start_soon(publish)
    assert sorted(numbers) == [2, 3, 4, 5]
    view = (await client.get(f"/v1/rulesets/{ruleset_id}")).json()
    assert view["live_version"] == 5


async def test_manual_adjustments_are_ledger_entries_with_a_reason(
    client: httpx.AsyncClient, container: Container
) -> None:
    await _publish(client)
    await client.post("/v1/events", json=[event("1")])
    container.scoring.score_pending()
    response = await client.post(
        "/v1/players/lms:alice/adjustments",
        json={"currency": "xp", "amount": 15, "reason": "webinar attendance"},
    )
    assert response.status_code == 201, response.text
    standing = response.json()["standing"]
    assert standing["balances"]["xp"] == 25.0
    assert standing["level"]["name"] == "Learner"
    entry = (await client.get("/v1/players/lms:alice/ledger")).json()["items"][-1]
    assert (entry["kind"], entry["amount"], entry["reason"]) == (
        "adjustment",
        15.0,
        "webinar attendance",
    )
    assert entry["actor"].startswith("key_")
    bad = await client.post(
        "/v1/players/lms:alice/adjustments", json={"currency": "gold", "amount": 1, "reason": "x"}
    )
    assert bad.status_code == 422


async def test_the_ledger_is_the_sum_of_the_balances(
    client: httpx.AsyncClient, container: Container
) -> None:
    await _publish(client)
    batch = [event(str(i), actor=f"u{i % 3}") for i in range(12)]
    await client.post("/v1/events", json=batch)
    container.scoring.score_pending()
    with container.db.read() as uow:
        assert isinstance(uow, SqlUnitOfWork)
        states = uow.conn.execute(tables.player_states.select()).mappings().all()
        assert len(states) == 3
        for row in states:
            assert row["state"]["balances"] == uow.scoring.balances("default", row["player_id"])


async def test_a_draft_is_simulated_against_the_live_version_without_writing(
    client: httpx.AsyncClient, container: Container
) -> None:
    ruleset_id = await _publish(client)
    batch = [event(f"l{i}", actor=f"u{i % 3}") for i in range(6)]
    batch += [event("d1", type="deal.closed", properties={"amount": 4000})]
    await client.post("/v1/events", json=batch)
    container.scoring.score_pending()
    before = (await client.get("/v1/players/lms:u0")).json()["standing"]

    draft = PROGRAM.replace("award: {xp: 10}", "award: {xp: 12}").replace(
        "at_least: 2}}", "at_least: 3}}"
    )
    await client.put(f"/v1/rulesets/{ruleset_id}/draft", json={"source": draft})
    response = await client.post(f"/v1/rulesets/{ruleset_id}/simulate", json={})
    assert response.status_code == 200, response.text
    sim = response.json()
    assert (sim["events"], sim["players"], sim["live_version"]) == (7, 4, 1)
    xp = next(c for c in sim["currencies"] if c["currency"] == "xp")
    assert (xp["live_total"], xp["draft_total"], xp["delta"]) == (60.0, 72.0, 12.0)
    assert xp["players_gaining"] == 3
    coins = next(c for c in sim["currencies"] if c["currency"] == "coins")
    assert coins["delta"] == 0.0
    scholar = next(b for b in sim["badges"] if b["badge"] == "scholar")
    assert (scholar["live_holders"], scholar["draft_holders"], scholar["lost"]) == (3, 0, 3)
    after = (await client.get("/v1/players/lms:u0")).json()["standing"]
    assert after == before  # nothing written

    window = await client.post(
        f"/v1/rulesets/{ruleset_id}/simulate",
        json={"occurred_from": "2026-05-02T00:00:00Z", "occurred_until": "2026-05-03T00:00:00Z"},
    )
    assert window.json()["events"] == 0


async def test_merging_players_merges_their_scores(
    client: httpx.AsyncClient, container: Container
) -> None:
    await _publish(client)
    await client.post(
        "/v1/events",
        json=[
            event("1", actor="ann"),
            event("2", source="crm", actor="A-1", type="lesson.completed"),
        ],
    )
    container.scoring.score_pending()
    merged = await client.post("/v1/players/lms:ann/merge", json={"player": "crm:A-1"})
    assert merged.status_code == 200, merged.text
    standing = (await client.get("/v1/players/lms:ann")).json()["standing"]
    assert standing["balances"] == {"xp": 20.0}
    # Two lessons between them: the merged player now holds the scholar badge's count.
    scholar = next(p for p in standing["progress"] if p["badge_id"] == "scholar")
    assert scholar["current"] == 2.0
    assert scholar["earned"] is True
    assert [b["badge_id"] for b in standing["badges"]] == ["scholar"]
    await client.post("/v1/events", json=[event("3", source="crm", actor="A-1")])
    container.scoring.score_pending()
    after = (await client.get("/v1/players/lms:ann")).json()["standing"]
    assert after["balances"] == {"xp": 30.0}
    ledger = (await client.get("/v1/players/lms:ann/ledger")).json()["items"]
    assert len(ledger) == 3
