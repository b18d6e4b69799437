"""Scoring properties over the embedded store: redelivery never doubles an effect (points,
badges, leaderboard scores), and a replay of the log ends identical to the state built
incrementally."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from itertools import count
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from plaudit.bootstrap import Container, build, prepare_embedded
from plaudit.domain.events import IncomingEvent
from plaudit.settings import Settings
from plaudit.store.sql import tables
from plaudit.store.sql.database import SqlUnitOfWork
from tests.conftest import FakeClock

RULES = """
currencies: [xp, coins]
rules:
  - {id: lesson, on: lesson.completed, award: {xp: 10}, cap: {per: day, max: {xp: 30}}}
  - {id: deal, on: deal.closed, award: {coins: "event.properties.amount / 100"}}
levels: {currency: xp, thresholds: [{name: a, at: 0}, {name: b, at: 50}]}
badges:
  - {id: busy, name: Busy, criteria: {count: {on: lesson.completed}},
     tiers: [{name: bronze, at_least: 2}, {name: silver, at_least: 5}]}
  - {id: seller, name: Seller, criteria: {sum: {on: deal.closed, property: event.properties.amount,
     at_least: 1000, window: {period: month}}}}
leaderboards:
  - {id: xp, name: XP, metric: {currency: xp}}
  # Events are received 20 to 60 days after they happen: some count, some are too late.
  - {id: coins-weekly, name: Coins, metric: {currency: coins}, window: week, time_zone: Asia/Tokyo,
     late_grace: P35D}
  - {id: lessons-daily, name: Lessons, metric: {count: {on: lesson.completed}}, window: day,
     late_grace: P30D}
"""
START = datetime(2026, 5, 1, tzinfo=UTC)
_ids = count()

event = st.builds(
    lambda kind, actor, hour, amount: (kind, actor, hour, amount),
    st.sampled_from(["lesson.completed", "deal.closed"]),
    st.sampled_from(["ann", "bob", "cy"]),
    st.integers(0, 24 * 40),
    st.integers(1, 900),
)
# Batches of events; after each batch, how far to rewind the scoring cursor (a redelivery).
scenario = st.lists(
    st.tuples(st.lists(event, min_size=1, max_size=8), st.integers(0, 10)), min_size=1, max_size=5
)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("scoring-properties")


@pytest.fixture(scope="module")
def template(root: Path) -> Path:
    """A migrated database with the rule set published, copied for each example."""
    c = build(Settings(data_dir=root / "template", _env_file=None), FakeClock(START))
    prepare_embedded(c)
    view = c.rulesets.create("default", "p", RULES)
    c.rulesets.publish("default", view.record.id, "test")
    c.close()
    return root / "template" / "plaudit.db"


def _container(root: Path, template: Path) -> Container:
    data = root / str(next(_ids))
    data.mkdir()
    shutil.copy(template, data / "plaudit.db")
    return build(Settings(data_dir=data, _env_file=None), FakeClock(START + timedelta(days=60)))


def _derived(c: Container) -> dict[str, Any]:
    with c.db.read() as uow:
        assert isinstance(uow, SqlUnitOfWork)

        # Ids are random per database: compare what the rows say, not what they are called.
        drop_ids = ("player_id", "event_id", "ruleset_id", "award_id", "ref", "subject")

        def rows(table: Any, drop: tuple[str, ...]) -> list[str]:
            drop = drop + drop_ids
            return sorted(
                repr({k: v for k, v in r.items() if k not in drop})
                for r in uow.conn.execute(table.select()).mappings()
            )

        return {
            "ledger": rows(tables.ledger, ("id", "recorded_at")),
            "awards": rows(tables.badge_awards, ("id",)),
            "levels": rows(tables.level_ups, ()),
            "board_entries": rows(tables.board_entries, ()),
            "board_scores": rows(tables.board_scores, ("seq",)),
            "states": rows(tables.player_states, ("updated_at", "state", "version")),
            "balances": sorted(
                repr(sorted(r["state"]["balances"].items()))
                for r in uow.conn.execute(tables.player_states.select()).mappings()
            ),
        }


def _ingest(c: Container, batch: list[tuple[str, str, int, int]]) -> None:
    events = [
        IncomingEvent(
            f"e{next(_ids)}", "lms", kind, actor, START + timedelta(hours=hour), {"amount": amount}
        )
        for kind, actor, hour, amount in batch
    ]
    c.ingest.ingest("default", events)


def _drain(c: Container) -> None:
    while c.scoring.score_pending().events:
        pass


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(scenario)
def test_redelivery_never_doubles_and_replay_equals_incremental(
    root: Path, template: Path, steps: list[tuple[list[tuple[str, str, int, int]], int]]
) -> None:
    redelivered, straight = _container(root, template), _container(root, template)
    try:
        for batch, rewind in steps:
            for c in (redelivered, straight):
                _ingest(c, batch)
                _drain(c)
            with redelivered.db.write() as uow:  # deliver the last events again
                position = uow.scoring.cursor("scoring")
                uow.scoring.set_cursor("scoring", max(0, position - rewind))
                uow.commit()
            _drain(redelivered)
        incremental = _derived(redelivered)
        assert incremental == _derived(straight)
        redelivered.scoring.replay()
        assert _derived(redelivered) == incremental
    finally:
        redelivered.close()
        straight.close()
