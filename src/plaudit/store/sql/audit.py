"""The admin audit log: appended in the transaction of the change it records."""

from __future__ import annotations

from sqlalchemy import Connection, select

from plaudit.store.ports import AuditQuery, AuditRow
from plaudit.store.sql import tables as t


class SqlAudit:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def add(self, tenant_id: str, row: AuditRow) -> None:
        self.conn.execute(
            t.audit_log.insert().values(
                tenant_id=tenant_id,
                at=row.at,
                actor=row.actor,
                action=row.action,
                resource_type=row.resource_type,
                resource_id=row.resource_id,
                before=dict(row.before) if row.before is not None else None,
                after=dict(row.after) if row.after is not None else None,
            )
        )

    def query(self, tenant_id: str, query: AuditQuery) -> list[tuple[int, AuditRow]]:
        c = t.audit_log.c
        stmt = select(t.audit_log).where(c.tenant_id == tenant_id)
        if query.resource_type is not None:
            stmt = stmt.where(c.resource_type == query.resource_type)
        if query.resource_id is not None:
            stmt = stmt.where(c.resource_id == query.resource_id)
        if query.actor is not None:
            stmt = stmt.where(c.actor == query.actor)
        if query.action is not None:
            stmt = stmt.where(c.action == query.action)
        if query.since is not None:
            stmt = stmt.where(c.at >= query.since)
        if query.until is not None:
            stmt = stmt.where(c.at < query.until)
        if query.before_id:
            stmt = stmt.where(c.id < query.before_id)
        rows = self.conn.execute(stmt.order_by(c.id.desc()).limit(query.limit)).mappings()
        return [
            (
                r["id"],
                AuditRow(
                    at=r["at"],
                    actor=r["actor"],
                    action=r["action"],
                    resource_type=r["resource_type"],
                    resource_id=r["resource_id"],
                    before=r["before"],
                    after=r["after"],
                ),
            )
            for r in rows
        ]
