from __future__ import annotations

from typing import Any

import httpx
import pytest

from plaudit.bootstrap import Container
from plaudit.domain.partitions import partition_of
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
            "issuance": rows(tables.issuance_log, ("id", "award_id")),
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
    badge = {"id": "mentor", "name": "Mentor", "description": "Coached a colleague."}
    assert (await client.post("/v1/badges", json=badge)).status_code == 201
    manual = await client.post(
        "/v1/badges/mentor/awards", json={"player": "lms:u1", "reason": "coached u2"}
    )
    assert manual.status_code == 201, manual.text

    incremental = _derived(container)
    versions = {row["ruleset_version"] for row in incremental["ledger"] if row["kind"] == "rule"}
    assert versions == {1, 2, 3}
    b_entries = [r for r in incremental["ledger"] if r["amount"] == 15.0]
    assert len(b_entries) == 4  # the b-events, at version 2's rate
    assert incremental["errors"]
    assert {a["source"] for a in incremental["awards"]} == {"rule", "manual"}
    assert {r["kind"] for r in incremental["ledger"]} == {"rule", "adjustment"}

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


BOARDS = """\
leaderboards:
  - id: xp
    name: XP
    metric: {currency: xp}
  - id: teams
    name: Teams
    metric: {currency: xp}
    group_by: team
  - id: deals
    name: Deals
    metric: {sum: {on: deal.closed, property: event.properties.amount}}
    group_by: team
"""


def _boards(container: Container) -> dict[str, Any]:
    with container.db.read() as uow:
        assert isinstance(uow, SqlUnitOfWork)
        return {
            name: sorted(
                (
                    {k: v for k, v in r.items() if k not in ("id", "seq")}
                    for r in uow.conn.execute(table.select()).mappings()
                ),
                key=repr,
            )
            for name, table in (
                ("entries", tables.board_entries),
                ("scores", tables.board_scores),
            )
        }


@pytest.mark.parametrize("processes", [1, 2])
async def test_replay_shared_out_among_processes_ends_as_incremental_scoring(
    client: httpx.AsyncClient,
    container: Container,
    monkeypatch: pytest.MonkeyPatch,
    processes: int,
) -> None:
    """Players spread over two processes, all of them in the same two teams: both processes
    add to the same group standings, and every derived row ends as scoring built it."""
    import plaudit.services.scoring as scoring_module

    created = await client.post("/v1/rulesets", json={"name": "P", "source": PROGRAM + BOARDS})
    assert created.status_code == 201, created.text
    await client.post(f"/v1/rulesets/{created.json()['id']}/publish")
    actors = [f"u{i}" for i in range(12)]
    for i, actor in enumerate(actors):
        await client.post("/v1/events", json=[event(f"first-{actor}", actor=actor)])
        patched = await client.patch(
            f"/v1/players/lms:{actor}", json={"attributes": {"team": "ab"[i % 2]}}
        )
        assert patched.status_code == 200, patched.text
    batch = [
        event(f"l{i}", actor=actors[i % 12], occurred_at=f"2026-05-0{1 + i % 7}T10:00:00Z")
        for i in range(60)
    ]
    deals = [
        event(f"d{i}", actor=actors[i % 5], type="deal.closed", properties={"amount": 100 * i})
        for i in range(15)
    ]
    await client.post("/v1/events", json=[*batch, *deals])
    while container.scoring.score_pending().events:
        pass
    incremental = {**_derived(container), **_boards(container)}
    assert {r["subject"] for r in incremental["scores"]} >= {"a", "b"}
    players = {r["player_id"] for r in incremental["ledger"]}
    shares = {partition_of("default", p) % 2 for p in players}
    assert shares == {0, 1}  # both processes have players

    monkeypatch.setattr(scoring_module, "PARALLEL_REPLAY_MIN", 0)
    replayed = container.scoring.replay(processes=processes)

    assert replayed == 12 + 60 + 15
    assert {**_derived(container), **_boards(container)} == incremental
    assert (container.scoring.replay_peak_rss > 0) == (processes > 1)  # not the fallback
