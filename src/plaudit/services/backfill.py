"""Backfill: apply a newly published version to the past, applying only the difference.

Gains (points, badges) are applied at once; losses (points the new version would not have
given, badges it would not have awarded) are held as pending until an admin confirms them:
a rule change never takes anything away silently.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from plaudit.domain.clock import Clock
from plaudit.domain.ids import new_id
from plaudit.errors import Conflict, NotFound
from plaudit.leaderboards.entries import board_entries
from plaudit.rules.effects import BadgeAwarded, PointsAwarded
from plaudit.rules.evaluate import PlayerFacts, evaluate
from plaudit.rules.state import PlayerState
from plaudit.services import audit
from plaudit.services.outbox import Outbox, revocation_message
from plaudit.services.rulesets import RuleBook
from plaudit.services.scoring import ScoringService
from plaudit.store.ports import (
    AwardRow,
    BoardEntryRow,
    Database,
    EventQuery,
    IssuanceRow,
    LedgerRow,
    RuleSetVersion,
    UnitOfWork,
)

_PAGE = 5000


@dataclass(frozen=True, slots=True)
class BackfillReport:
    id: str
    ruleset_id: str
    version: int
    status: str
    applied: dict[str, Any]
    pending: dict[str, Any]


class BackfillService:
    def __init__(self, db: Database, clock: Clock, book: RuleBook, scoring: ScoringService) -> None:
        self.db = db
        self.clock = clock
        self.book = book
        self.scoring = scoring

    def backfill(self, tenant_id: str, version: RuleSetVersion, actor: str) -> BackfillReport:
        while self.scoring.score_pending().events:
            pass  # bring incremental scoring up to date first
        rules = self.book.get(version)
        now = self.clock()
        label = f"backfill:{version.ruleset_id}@{version.version}"
        with self.db.write() as uow:
            entries: list[BoardEntryRow] = []
            history = self._run_history(uow, tenant_id, rules, entries)
            totals = uow.scoring.derived_totals(tenant_id)
            applied: dict[str, Any] = {"points": [], "badges": []}
            pending: dict[str, Any] = {"points": [], "badges": []}
            ledger: list[LedgerRow] = []
            awards: list[AwardRow] = []
            trail: list[IssuanceRow] = []
            for player_id, (_, points, earned) in history.items():
                for currency in sorted(set(points) | {c for p, c in totals if p == player_id}):
                    delta = round(
                        points.get(currency, 0.0) - totals.get((player_id, currency), 0.0), 4
                    )
                    item = {"player_id": player_id, "currency": currency, "amount": delta}
                    if delta > 0:
                        ledger.append(
                            LedgerRow(
                                player_id,
                                currency,
                                delta,
                                "backfill",
                                label,
                                now,
                                version.ruleset_id,
                                version.version,
                                None,
                                label,
                                actor,
                            )
                        )
                        applied["points"].append(item)
                    elif delta < 0:
                        pending["points"].append(item)
                held = {
                    (a.badge_id, a.tier): a
                    for a in uow.scoring.awards(tenant_id, player_id=player_id)
                    if a.revoked_at is None and a.source in ("rule", "backfill")
                }
                for (badge_id, tier), effect in sorted(earned.items(), key=lambda kv: str(kv[0])):
                    if (badge_id, tier) in held:
                        continue
                    award = AwardRow(
                        new_id("awd"),
                        player_id,
                        badge_id,
                        tier,
                        1,
                        "backfill",
                        effect.awarded_at,
                        effect.expires_at,
                        None,
                        version.ruleset_id,
                        version.version,
                    )
                    awards.append(award)
                    trail.append(
                        IssuanceRow(
                            award.id,
                            player_id,
                            badge_id,
                            "issued",
                            label,
                            f"backfill of version {version.version}",
                            now,
                        )
                    )
                    applied["badges"].append(
                        {"player_id": player_id, "badge_id": badge_id, "tier": tier}
                    )
                for (badge_id, tier), award in sorted(held.items(), key=lambda kv: str(kv[0])):
                    if (badge_id, tier) not in earned:
                        pending["badges"].append(
                            {
                                "player_id": player_id,
                                "badge_id": badge_id,
                                "tier": tier,
                                "award_id": award.id,
                            }
                        )
            uow.scoring.append_ledger(tenant_id, ledger, now)
            uow.scoring.add_awards(tenant_id, awards)
            uow.badges.log(tenant_id, trail)
            outbox = Outbox(uow, tenant_id, now)
            outbox.awards(awards)
            outbox.points(ledger)
            self._save_states(uow, tenant_id, history, pending)
            # Standings are not awards: they follow the new version at once (nothing is held).
            uow.boards.replace_event_entries(tenant_id, entries)
            if rules.boards:
                applied["leaderboard_entries"] = len(entries)
            record = {
                "id": new_id("bf"),
                "ruleset_id": version.ruleset_id,
                "version": version.version,
                "applied": applied,
                "pending": pending,
                "status": "pending"
                if pending["points"] or pending["badges"]
                else "nothing-pending",
                "created_at": now,
                "created_by": actor,
            }
            uow.scoring.save_backfill(tenant_id, record)
            uow.commit()
        return _report(record)

    def _run_history(
        self, uow: UnitOfWork, tenant_id: str, rules: Any, entries: list[BoardEntryRow]
    ) -> dict[
        str, tuple[PlayerState, dict[str, float], dict[tuple[str, str | None], BadgeAwarded]]
    ]:
        """The new version over every scored event, from empty states, in log order."""
        scored = self.scoring.scored(uow)
        out: dict[
            str, tuple[PlayerState, dict[str, float], dict[tuple[str, str | None], BadgeAwarded]]
        ] = {}
        facts: dict[str, PlayerFacts] = {}
        after = 0
        while True:
            events = [
                e
                for e in uow.events.query(tenant_id, EventQuery(after_position=after, limit=_PAGE))
                if scored(e)
            ]
            if not events:
                break
            retracted = uow.scoring.retracted(tenant_id, [e.id for e in events])
            missing = {e.player_id for e in events} - facts.keys()
            for pid, p in uow.players.get_many(tenant_id, missing).items():
                facts[pid] = PlayerFacts.of(p, pid)
            for e in events:
                state, points, earned = out.setdefault(
                    e.player_id, (PlayerState(), defaultdict(float), {})
                )
                state.advance(e.position, e.partition if self.scoring.partitioned else None)
                if e.id in retracted:
                    continue
                effects = evaluate(
                    rules, state, e, facts.get(e.player_id, PlayerFacts(e.player_id))
                )
                if rules.boards:
                    entries.extend(
                        board_entries(
                            rules, e.id, e.occurred_at, e.received_at, effects, e.player_id
                        )
                    )
                for effect in effects:
                    if isinstance(effect, PointsAwarded):
                        points[effect.currency] = round(points[effect.currency] + effect.amount, 4)
                    elif isinstance(effect, BadgeAwarded):
                        earned.setdefault((effect.badge_id, effect.tier), effect)
            after = events[-1].position
        return out

    def _save_states(
        self,
        uow: UnitOfWork,
        tenant_id: str,
        history: dict[
            str, tuple[PlayerState, dict[str, float], dict[tuple[str, str | None], BadgeAwarded]]
        ],
        pending: dict[str, Any],
    ) -> None:
        """The new version's states, with balances from the ledger (pending losses not taken)
        and the holdings of badges whose revocation is pending."""
        old = uow.scoring.states(tenant_id, history)
        kept = defaultdict(set)
        for item in pending["badges"]:
            kept[item["player_id"]].add(item["badge_id"])
        states = {}
        for player_id, (state, _, _) in history.items():
            previous = PlayerState.from_json(old.get(player_id))
            state.position = max(state.position, previous.position)
            for part, mark in previous.marks.items():
                state.marks[part] = max(state.marks.get(part, 0), mark)
            state.balances = uow.scoring.balances(tenant_id, player_id)
            for badge_id in kept[player_id]:
                if badge_id in previous.badges:
                    state.badges[badge_id] = previous.badges[badge_id]
            states[player_id] = state.to_json()
        uow.scoring.save_states(tenant_id, states, self.clock())

    def get(self, tenant_id: str, backfill_id: str) -> BackfillReport:
        with self.db.read() as uow:
            record = uow.scoring.backfill(tenant_id, backfill_id)
        if record is None:
            raise NotFound(f"no backfill {backfill_id!r}")
        return _report(record)

    def confirm(self, tenant_id: str, backfill_id: str, actor: str) -> BackfillReport:
        """Apply the losses a backfill held back: revoke the badges, take back the points."""
        now = self.clock()
        with self.db.write() as uow:
            record = uow.scoring.backfill(tenant_id, backfill_id)
            if record is None:
                raise NotFound(f"no backfill {backfill_id!r}")
            if record["status"] != "pending":
                raise Conflict(f"backfill {backfill_id!r} has nothing pending ({record['status']})")
            label = f"backfill:{record['ruleset_id']}@{record['version']}"
            reason = f"backfill of version {record['version']} confirmed"
            pending = record["pending"]
            taken = [
                LedgerRow(
                    p["player_id"],
                    p["currency"],
                    p["amount"],
                    "backfill",
                    label,
                    now,
                    record["ruleset_id"],
                    record["version"],
                    None,
                    reason,
                    actor,
                )
                for p in pending["points"]
            ]
            uow.scoring.append_ledger(tenant_id, taken, now)
            Outbox(uow, tenant_id, now).points(taken)
            audit.record(
                uow,
                tenant_id,
                "backfill.confirm",
                ("backfill", backfill_id),
                now,
                before={"status": "pending"},
                after={"points": len(taken), "badges": len(pending["badges"])},
            )
            players = {p["player_id"] for p in pending["points"]} | {
                b["player_id"] for b in pending["badges"]
            }
            states = {
                pid: PlayerState.from_json(raw)
                for pid, raw in uow.scoring.states(tenant_id, players).items()
            }
            for b in pending["badges"]:
                if uow.badges.revoke_award(tenant_id, b["award_id"], now, reason):
                    Outbox(uow, tenant_id, now).tell([revocation_message(b, reason, actor, now)])
                    uow.badges.log(
                        tenant_id,
                        [
                            IssuanceRow(
                                b["award_id"],
                                b["player_id"],
                                b["badge_id"],
                                "revoked",
                                actor,
                                reason,
                                now,
                            )
                        ],
                    )
                state = states.get(b["player_id"])
                if state is not None:
                    state.badges.pop(b["badge_id"], None)
            for pid, state in states.items():
                state.balances = uow.scoring.balances(tenant_id, pid)
            uow.scoring.save_states(tenant_id, {pid: s.to_json() for pid, s in states.items()}, now)
            record.update(status="confirmed", confirmed_at=now, confirmed_by=actor)
            uow.scoring.save_backfill(tenant_id, record)
            uow.commit()
        return _report(record)


def _report(record: dict[str, Any]) -> BackfillReport:
    return BackfillReport(
        record["id"],
        record["ruleset_id"],
        record["version"],
        record["status"],
        record["applied"],
        record["pending"],
    )
