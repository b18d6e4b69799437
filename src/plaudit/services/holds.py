"""The review queue of anti-cheat holds: players whose events were set aside because their
activity looked abnormal. An admin releases them (scored now, in log order) or rejects them
(retracted: never scored, and a replay agrees). Every decision is in the audit log."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from plaudit.domain.clock import Clock
from plaudit.errors import NotFound
from plaudit.services import audit
from plaudit.services.players import find_player
from plaudit.services.scoring import ScoringService
from plaudit.store.ports import Database


@dataclass(frozen=True, slots=True)
class HeldPlayer:
    player_id: str
    events: int
    reason: str
    since: datetime


class HoldService:
    def __init__(self, db: Database, clock: Clock, scoring: ScoringService) -> None:
        self.db = db
        self.clock = clock
        self.scoring = scoring

    def queue(self, tenant_id: str) -> list[HeldPlayer]:
        """Players with held events, the longest waiting first."""
        with self.db.read() as uow:
            rows = uow.holds.pending(tenant_id)
        first: dict[str, tuple[str, datetime]] = {}
        counts: dict[str, int] = {}
        for r in rows:  # in log order: a player's first row says why the hold began
            first.setdefault(r.player_id, (r.reason, r.held_at))
            counts[r.player_id] = counts.get(r.player_id, 0) + 1
        found = [HeldPlayer(p, counts[p], why, at) for p, (why, at) in first.items()]
        return sorted(found, key=lambda h: h.since)

    def release(self, tenant_id: str, ref: str, actor: str) -> int:
        return self._decide(tenant_id, ref, "released", "", actor)

    def reject(self, tenant_id: str, ref: str, reason: str, actor: str) -> int:
        return self._decide(tenant_id, ref, "rejected", reason, actor)

    def _decide(self, tenant_id: str, ref: str, status: str, reason: str, actor: str) -> int:
        now = self.clock()
        with self.db.write() as uow:
            player = find_player(uow, tenant_id, ref)
            held = uow.holds.pending(tenant_id, player.id)
            if not held:
                raise NotFound(f"no held events for player {ref!r}")
            ids = [h.event_id for h in held]
            uow.holds.decide(tenant_id, ids, status, now, actor)
            if status == "released":
                count = self.scoring.score_released(uow, tenant_id, player.id, ids)
            else:
                why = f"rejected in review: {reason}"
                for event_id in ids:
                    uow.scoring.retract(tenant_id, event_id, why, actor, now)
                self.scoring.clear_hold(uow, tenant_id, player.id)
                count = len(ids)
            audit.record(
                uow,
                tenant_id,
                f"hold.{'release' if status == 'released' else 'reject'}",
                ("player", player.id),
                now,
                before={"held_events": ids},
                after={"status": status, "reason": reason or None, "scored": count},
            )
            uow.commit()
        return len(ids)
