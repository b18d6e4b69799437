"""Badge classes managed through the API, award revocation, and the issuance audit trail."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Connection, RowMapping, select, update

from plaudit.store.ports import AwardRow, BadgeClass, IssuanceRow
from plaudit.store.sql import tables as t
from plaudit.store.sql.repositories import _sqlite_datetime, sqlite_insert
from plaudit.store.sql.scoring import award_row


def _badge(row: RowMapping) -> BadgeClass:
    return BadgeClass(
        id=row["id"],
        name=row["name"],
        description=row["description"],
        image=row["image"],
        narrative=row["narrative"],
        tags=list(row["tags"]),
        alignment=list(row["alignment"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


class SqlBadges:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def classes(self, tenant_id: str) -> list[BadgeClass]:
        c = t.badge_classes.c
        rows = self.conn.execute(
            select(t.badge_classes)
            .where(c.tenant_id == tenant_id, c.deleted_at.is_(None))
            .order_by(c.id)
        ).mappings()
        return [_badge(r) for r in rows]

    def get_class(self, tenant_id: str, badge_id: str) -> BadgeClass | None:
        c = t.badge_classes.c
        row = self.conn.execute(
            select(t.badge_classes).where(
                c.tenant_id == tenant_id, c.id == badge_id, c.deleted_at.is_(None)
            )
        ).first()
        return _badge(row._mapping) if row else None

    def save_class(self, tenant_id: str, badge: BadgeClass, create: bool = False) -> bool:
        """Update a live class, or (``create``) revive a deleted one or insert it. False when
        there was no live class to update. Creating a class that another transaction created
        meanwhile fails on the unique key: the caller's transaction writes nothing."""
        c = t.badge_classes.c
        values = {
            "name": badge.name,
            "description": badge.description,
            "image": badge.image,
            "narrative": badge.narrative,
            "tags": badge.tags,
            "alignment": badge.alignment,
            "updated_at": badge.updated_at,
            "deleted_at": None,
        }
        # Only the row the caller saw: a live one to update, a deleted one to revive (a class
        # created by another request meanwhile is neither, and is never overwritten).
        state = c.deleted_at.is_not(None) if create else c.deleted_at.is_(None)
        changed = self.conn.execute(
            update(t.badge_classes)
            .where(c.tenant_id == tenant_id, c.id == badge.id, state)
            .values(**values, **({"created_at": badge.created_at} if create else {}))
        )
        if changed.rowcount == 0:
            if not create:
                return False
            self.conn.execute(
                t.badge_classes.insert().values(
                    tenant_id=tenant_id, id=badge.id, created_at=badge.created_at, **values
                )
            )
        return True

    def delete_class(self, tenant_id: str, badge_id: str, at: datetime) -> bool:
        c = t.badge_classes.c
        result = self.conn.execute(
            update(t.badge_classes)
            .where(c.tenant_id == tenant_id, c.id == badge_id, c.deleted_at.is_(None))
            .values(deleted_at=at)
        )
        return result.rowcount == 1

    def get_award(self, tenant_id: str, award_id: str) -> AwardRow | None:
        c = t.badge_awards.c
        row = self.conn.execute(
            select(t.badge_awards).where(c.tenant_id == tenant_id, c.id == award_id)
        ).first()
        return award_row(row._mapping) if row else None

    def revoke_award(self, tenant_id: str, award_id: str, at: datetime, reason: str) -> bool:
        c = t.badge_awards.c
        result = self.conn.execute(
            update(t.badge_awards)
            .where(c.tenant_id == tenant_id, c.id == award_id, c.revoked_at.is_(None))
            .values(revoked_at=at, revoked_reason=reason)
        )
        return result.rowcount == 1

    def log(self, tenant_id: str, rows: Sequence[IssuanceRow]) -> None:
        if not rows:
            return
        if self.conn.dialect.name == "sqlite":
            sqlite_insert(
                self.conn,
                "issuance_log",
                (
                    "tenant_id",
                    "award_id",
                    "player_id",
                    "badge_id",
                    "action",
                    "actor",
                    "reason",
                    "at",
                ),
                [
                    (
                        tenant_id,
                        r.award_id,
                        r.player_id,
                        r.badge_id,
                        r.action,
                        r.actor,
                        r.reason[:1000],
                        _sqlite_datetime(r.at),
                    )
                    for r in rows
                ],
            )
            return
        self.conn.execute(
            t.issuance_log.insert(),
            [
                {
                    "tenant_id": tenant_id,
                    "award_id": r.award_id,
                    "player_id": r.player_id,
                    "badge_id": r.badge_id,
                    "action": r.action,
                    "actor": r.actor,
                    "reason": r.reason[:1000],
                    "at": r.at,
                }
                for r in rows
            ],
        )

    def issuance(
        self, tenant_id: str, badge_id: str | None, player_id: str | None, after_id: int, limit: int
    ) -> list[tuple[int, IssuanceRow]]:
        c = t.issuance_log.c
        stmt = select(t.issuance_log).where(c.tenant_id == tenant_id, c.id > after_id)
        if badge_id is not None:
            stmt = stmt.where(c.badge_id == badge_id)
        if player_id is not None:
            stmt = stmt.where(c.player_id == player_id)
        rows = self.conn.execute(stmt.order_by(c.id).limit(limit)).mappings()
        return [
            (
                r["id"],
                IssuanceRow(
                    r["award_id"],
                    r["player_id"],
                    r["badge_id"],
                    r["action"],
                    r["actor"],
                    r["reason"],
                    r["at"],
                ),
            )
            for r in rows
        ]
