from __future__ import annotations

from typing import Any

import httpx
import pytest

from plaudit.bootstrap import Container
from plaudit.store.sql import tables
from plaudit.store.sql.database import SqlUnitOfWork
from tests.api.test_rulesets_and_scoring import PROGRAM
from tests.support.events import event

pytestmark = pytest.mark.anyio


def _derived(container: Container) -> dict[str, Any]:
    """Everything scoring derived, without surrogate ids and recording times."""
    with container.db.read() as uow:
        assert isinstance(uow, SqlUnitOfWork)

        def rows(table: Any, drop: tuple[str, ...]) -> list[dict[str, Any]]:
            found = [
                {k: v for k, v in r.items() if k not in drop}
                for r in uow.conn.execute(table.select()).mappings()
            ]
            return sorted(found, key=repr)

        return {
            "ledger": rows(tables.ledger, ("id", "recorded_at")),
            "awards": rows(tables.badge_awards, ("id",)),
            "levels": rows(tables.level_ups, ()),
            "states": rows(tables.player_states, ("updated_at", "version")),
            "errors": rows(tables.rule_errors, ("id", "at")),
        }


async def test_replay_rebuilds_exactly_what_incremental_scoring_built(
    client: httpx.AsyncClient, container: Container
) -> None:
    created = await client.post("/v1/rulesets", json={"name": "P", "source": PROGRAM})
    ruleset = created.json()["id"]
    await client.post(f"/v1/rulesets/{ruleset}/publish")
    await client.post("/v1/events", json=[event(f"a{i}", actor=f"u{i % 3}") for i in range(7)])
    container.scoring.score_pending()

    v2 = PROGRAM.replace("award: {xp: 10}", "award: {xp: 15}")
    await client.put(f"/v1/rulesets/{ruleset}/draft", json={"source": v2})
    await client.post(f"/v1/rulesets/{ruleset}/publish")
    deals = [
        event(f"d{i}", actor=f"u{i % 2}", type="deal.closed", properties={"amount": 1500 * i})
        for i in range(5)
    ]
    await client.post("/v1/events", json=[*deals, event("bad", type="deal.closed")])
    # Logged while version 2 is live, scored only after version 3 goes live: version 2 scores them.
    await client.post("/v1/events", json=[event(f"b{i}", actor="u1") for i in range(4)])
    await client.put(f"/v1/rulesets/{ruleset}/draft", json={"source": PROGRAM})
    await client.post(f"/v1/rulesets/{ruleset}/publish")
    container.scoring.score_pending()
    await client.post("/v1/events", json=[event(f"c{i}", actor="u2") for i in range(3)])
    container.scoring.score_pending()
    adjusted = await client.post(
        "/v1/players/lms:u0/adjustments", json={"currency": "xp", "amount": 7, "reason": "bonus"}
    )
    assert adjusted.status_code == 201

    incremental = _derived(container)
    versions = {row["ruleset_version"] for row in incremental["ledger"] if row["kind"] == "rule"}
    assert versions == {1, 2, 3}
    b_entries = [r for r in incremental["ledger"] if r["amount"] == 15.0]
    assert len(b_entries) == 4  # the b-events, at version 2's rate
    assert incremental["errors"]

    replayed = container.scoring.replay()
    assert replayed == 20
    assert _derived(container) == incremental


async def test_a_defect_during_replay_costs_one_event_not_the_replay(
    client: httpx.AsyncClient, container: Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    import plaudit.services.scoring as scoring_module

    created = await client.post("/v1/rulesets", json={"name": "P", "source": PROGRAM})
    await client.post(f"/v1/rulesets/{created.json()['id']}/publish")
    await client.post("/v1/events", json=[event(f"a{i}") for i in range(4)])
    container.scoring.score_pending()
    doomed = (await client.get("/v1/events")).json()["items"][2]["event_id"]
    from plaudit.rules.evaluate import evaluate as real

    def flaky(rules: Any, state: Any, facts: Any, player: Any) -> Any:
        if facts.id == doomed:
            raise RuntimeError("a defect")
        return real(rules, state, facts, player)

    monkeypatch.setattr(scoring_module, "evaluate", flaky)
    assert container.scoring.replay() == 4
    standing = (await client.get("/v1/players/lms:alice")).json()["standing"]
    assert standing["balances"] == {"xp": 30.0}  # three of the four lessons
    errors = (await client.get("/v1/rule-errors")).json()["items"]
    assert [(e["event_id"], e["rule_id"]) for e in errors] == [(doomed, "engine")]
    assert "a defect" in errors[0]["message"]
