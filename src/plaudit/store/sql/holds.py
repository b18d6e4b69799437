"""Events held for review (anti-cheat) and the decisions taken on them."""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from datetime import datetime

from sqlalchemy import Connection, func, select, update

from plaudit.store.ports import HeldEvent
from plaudit.store.sql import tables as t
from plaudit.store.sql.repositories import _chunks, _insert


class SqlHolds:
    def __init__(self, conn: Connection, writing: bool = False) -> None:
        self.conn = conn
        self.writing = writing

    def add(self, tenant_id: str, rows: Sequence[HeldEvent]) -> None:
        if not rows:
            return
        stmt = _insert(self.conn, t.held_events).on_conflict_do_nothing(
            index_elements=[t.held_events.c.tenant_id, t.held_events.c.event_id]
        )
        self.conn.execute(
            stmt,
            [
                {
                    "tenant_id": tenant_id,
                    "event_id": r.event_id,
                    "player_id": r.player_id,
                    "position": r.position,
                    "reason": r.reason,
                    "held_at": r.held_at,
                    "status": "pending",
                }
                for r in rows
            ],
        )

    def decided(self, tenant_id: str, event_ids: Iterable[str]) -> dict[str, str]:
        c = t.held_events.c
        found: dict[str, str] = {}
        for chunk in _chunks(sorted(set(event_ids))):
            rows = self.conn.execute(
                select(c.event_id, c.status).where(
                    c.tenant_id == tenant_id, c.status != "pending", c.event_id.in_(chunk)
                )
            )
            found.update((r[0], r[1]) for r in rows)
        return found

    def pending(self, tenant_id: str, player_id: str | None = None) -> list[HeldEvent]:
        c = t.held_events.c
        query = select(t.held_events).where(c.tenant_id == tenant_id, c.status == "pending")
        if player_id is not None:
            query = query.where(c.player_id == player_id)
        query = query.order_by(c.position)
        # In a write, locked to the commit: of two reviews of one player, the second finds the
        # events decided (PostgreSQL reads the rows again once their lock is released).
        rows = self.conn.execute(query.with_for_update() if self.writing else query).mappings()
        return [
            HeldEvent(r["event_id"], r["player_id"], r["position"], r["reason"], r["held_at"])
            for r in rows
        ]

    def typical_day(
        self, tenant_id: str, day: str, start: datetime, end: datetime, at: datetime
    ) -> float:
        a = t.activity_days.c
        stored = self.conn.execute(
            select(a.median).where(a.tenant_id == tenant_id, a.day == day)
        ).scalar()
        if stored is not None:
            return float(stored)
        e = t.events.c
        counts = sorted(
            int(n)
            for (n,) in self.conn.execute(
                select(func.count())
                .where(e.tenant_id == tenant_id, e.occurred_at >= start, e.occurred_at < end)
                .group_by(e.player_id)
            )
        )
        median = float(statistics.median(counts)) if counts else 0.0
        self.conn.execute(
            _insert(self.conn, t.activity_days)
            .values(tenant_id=tenant_id, day=day, median=median, computed_at=at)
            .on_conflict_do_nothing(index_elements=[a.tenant_id, a.day])
        )
        return median

    def decide(
        self, tenant_id: str, event_ids: Sequence[str], status: str, at: datetime, by: str
    ) -> None:
        c = t.held_events.c
        for chunk in _chunks(list(event_ids)):
            self.conn.execute(
                update(t.held_events)
                .where(c.tenant_id == tenant_id, c.event_id.in_(chunk))
                .values(status=status, decided_at=at, decided_by=by)
            )
