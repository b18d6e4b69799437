"""The outbox, webhook subscriptions and their secrets, deliveries and attempts."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import fields
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import (
    Connection,
    RowMapping,
    and_,
    bindparam,
    delete,
    exists,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.orm import aliased

from plaudit.domain.ids import new_id
from plaudit.store.ports import (
    AttemptRow,
    Delivery,
    DeliveryUpdate,
    OutboxMessage,
    SecretRow,
    StoredMessage,
    Subscription,
)
from plaudit.store.sql import tables as t
from plaudit.store.sql.postgres import fetch
from plaudit.store.sql.repositories import (
    TAIL_LOCK,
    _chunks,
    _insert,
    _sqlite_datetime,
    serialize,
)

UNFINISHED = ("pending", "sending")
_OUTBOX_SQL = (
    "INSERT INTO outbox (id, tenant_id, type, key, player_id, data, created_at)"
    " VALUES (?,?,?,?,?,?,?) ON CONFLICT (tenant_id, key) DO NOTHING"
)


def _message(row: RowMapping) -> StoredMessage:
    return StoredMessage(
        seq=row["seq"],
        id=row["id"],
        tenant_id=row["tenant_id"],
        type=row["type"],
        player_id=row["player_id"],
        data=dict(row["data"]),
        created_at=row["created_at"],
    )


# PostgreSQL's NOTIFY channel: a transaction that adds messages tells its listeners (the
# dispatcher) when it commits.
OUTBOX_CHANGES = "plaudit_outbox_changes"


class SqlOutbox:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def add(self, tenant_id: str, messages: Sequence[OutboxMessage], at: datetime) -> int:
        if not messages:
            return 0
        serialize(self.conn, TAIL_LOCK, notify=OUTBOX_CHANGES)
        if self.conn.dialect.name == "sqlite":
            # By hand, as the ledger: scoring writes a message per award and level reached,
            # and SQLAlchemy's per-row processing cost more than SQLite's insert.
            created = _sqlite_datetime(at)
            written = self.conn.exec_driver_sql(
                _OUTBOX_SQL,
                [
                    (
                        new_id("msg"),
                        tenant_id,
                        m.type,
                        m.key,
                        m.player_id,
                        orjson.dumps(m.data).decode(),
                        created,
                    )
                    for m in messages
                ],
            ).rowcount
            return int(written)
        rows = [
            {
                "id": new_id("msg"),
                "tenant_id": tenant_id,
                "type": m.type,
                "key": m.key,
                "player_id": m.player_id,
                "data": dict(m.data),
                "created_at": at,
            }
            for m in messages
        ]
        stmt = _insert(self.conn, t.outbox).on_conflict_do_nothing(
            index_elements=[t.outbox.c.tenant_id, t.outbox.c.key]
        )
        written = 0
        for chunk in _chunks(rows, 500):
            written += self.conn.execute(stmt, list(chunk)).rowcount
        return written

    def has(self, tenant_id: str, key: str) -> bool:
        c = t.outbox.c
        found = self.conn.execute(
            select(c.seq).where(c.tenant_id == tenant_id, c.key == key).limit(1)
        ).first()
        return found is not None

    def after(self, seq: int, limit: int) -> list[StoredMessage]:
        c = t.outbox.c
        rows = self.conn.execute(
            select(t.outbox).where(c.seq > seq).order_by(c.seq).limit(limit)
        ).mappings()
        return [_message(r) for r in rows]

    def get_many(self, seqs: Iterable[int]) -> dict[int, StoredMessage]:
        c = t.outbox.c
        found: dict[int, StoredMessage] = {}
        for chunk in _chunks(sorted(set(seqs))):
            for r in self.conn.execute(select(t.outbox).where(c.seq.in_(chunk))).mappings():
                found[r["seq"]] = _message(r)
        return found

    def for_player(
        self, tenant_id: str, player_id: str, types: Iterable[str], after_seq: int, limit: int
    ) -> list[StoredMessage]:
        c = t.outbox.c
        rows = self.conn.execute(
            select(t.outbox)
            .where(
                c.tenant_id == tenant_id,
                c.player_id == player_id,
                c.seq > after_seq,
                c.type.in_(sorted(types)),
            )
            .order_by(c.seq)
            .limit(limit)
        ).mappings()
        return [_message(r) for r in rows]

    def last_seq(self) -> int:
        return int(self.conn.execute(select(func.max(t.outbox.c.seq))).scalar() or 0)

    def purge(self, before: datetime) -> int:
        c, d = t.outbox.c, t.webhook_deliveries.c
        needed = exists().where(
            d.message_seq == c.seq, or_(d.status.in_(UNFINISHED), d.status == "dead")
        )
        result = self.conn.execute(delete(t.outbox).where(c.created_at < before, ~needed))
        return int(result.rowcount)


def _subscription(row: RowMapping) -> Subscription:
    return Subscription(
        id=row["id"],
        tenant_id=row["tenant_id"],
        url=row["url"],
        event_types=tuple(row["event_types"]),
        filter=row["filter"],
        description=row["description"],
        enabled=bool(row["enabled"]),
        ordered=bool(row["ordered"]),
        max_in_flight=row["max_in_flight"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        disabled_at=row["disabled_at"],
        disabled_reason=row["disabled_reason"],
        failing_since=row["failing_since"],
        last_success_at=row["last_success_at"],
    )


def _delivery(row: RowMapping) -> Delivery:
    return Delivery(**row)  # the table's columns are the dataclass's fields


def _columns(record: Delivery | Subscription) -> dict[str, Any]:
    """A record as the row that holds it (its fields are the table's columns)."""
    return {f.name: getattr(record, f.name) for f in fields(record)}


# The event types of a tenant's live subscriptions (JSON, which psycopg decodes).
_WANTED_PG = (
    "SELECT event_types FROM webhook_subscriptions "
    "WHERE tenant_id = %s AND deleted_at IS NULL AND enabled"
)


class SqlWebhooks:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def subscriptions(self, tenant_id: str | None) -> list[Subscription]:
        c = t.webhook_subscriptions.c
        query = select(t.webhook_subscriptions).where(c.deleted_at.is_(None))
        if tenant_id is not None:
            query = query.where(c.tenant_id == tenant_id)
        return [_subscription(r) for r in self.conn.execute(query.order_by(c.id)).mappings()]

    def get(self, tenant_id: str, subscription_id: str) -> Subscription | None:
        c = t.webhook_subscriptions.c
        row = self.conn.execute(
            select(t.webhook_subscriptions).where(
                c.tenant_id == tenant_id, c.id == subscription_id, c.deleted_at.is_(None)
            )
        ).first()
        return _subscription(row._mapping) if row else None

    def save(self, sub: Subscription) -> None:
        values = _columns(sub)
        values["event_types"] = list(sub.event_types)
        del values["id"]
        stmt = _insert(self.conn, t.webhook_subscriptions).values(id=sub.id, **values)
        self.conn.execute(
            stmt.on_conflict_do_update(index_elements=[t.webhook_subscriptions.c.id], set_=values)
        )

    def delete(self, tenant_id: str, subscription_id: str, at: datetime) -> bool:
        c, d = t.webhook_subscriptions.c, t.webhook_deliveries.c
        done = self.conn.execute(
            update(t.webhook_subscriptions)
            .where(c.tenant_id == tenant_id, c.id == subscription_id, c.deleted_at.is_(None))
            .values(deleted_at=at, enabled=False)
        ).rowcount
        # Nothing more goes to a deleted endpoint.
        self.conn.execute(
            update(t.webhook_deliveries)
            .where(d.subscription_id == subscription_id, d.status.in_(UNFINISHED))
            .values(status="dead", due_at=None, last_error="subscription deleted", finished_at=at)
        )
        return bool(done)

    def wants(self, tenant_id: str, event_type: str) -> bool:
        if self.conn.dialect.name == "postgresql":  # once a scoring step: on psycopg
            found = fetch(self.conn, _WANTED_PG, (tenant_id,))
            return any(event_type in types for (types,) in found)
        return any(s.enabled and event_type in s.event_types for s in self.subscriptions(tenant_id))

    def secrets(self, subscription_ids: Iterable[str], at: datetime) -> dict[str, list[str]]:
        c = t.webhook_secrets.c
        found: dict[str, list[str]] = {}
        for chunk in _chunks(sorted(set(subscription_ids))):
            rows = self.conn.execute(
                select(c.subscription_id, c.secret)
                .where(c.subscription_id.in_(chunk), or_(c.expires_at.is_(None), c.expires_at > at))
                .order_by(c.id.desc())
            )
            for sub_id, secret in rows:
                found.setdefault(sub_id, []).append(secret)
        return found

    def secret_rows(self, tenant_id: str, subscription_id: str) -> list[SecretRow]:
        c = t.webhook_secrets.c
        rows = self.conn.execute(
            select(c.secret, c.created_at, c.expires_at)
            .where(c.tenant_id == tenant_id, c.subscription_id == subscription_id)
            .order_by(c.id.desc())
        )
        return [SecretRow(*r) for r in rows]

    def add_secret(self, tenant_id: str, subscription_id: str, secret: str, at: datetime) -> None:
        self.conn.execute(
            t.webhook_secrets.insert().values(
                tenant_id=tenant_id, subscription_id=subscription_id, secret=secret, created_at=at
            )
        )

    def expire_secrets(self, tenant_id: str, subscription_id: str, at: datetime) -> None:
        c = t.webhook_secrets.c
        self.conn.execute(
            update(t.webhook_secrets)
            .where(
                c.tenant_id == tenant_id,
                c.subscription_id == subscription_id,
                or_(c.expires_at.is_(None), c.expires_at > at),
            )
            .values(expires_at=at)
        )

    def add_deliveries(self, rows: Sequence[Delivery]) -> int:
        if not rows:
            return 0
        values = [_columns(r) for r in rows]
        d = t.webhook_deliveries.c
        stmt = _insert(self.conn, t.webhook_deliveries).on_conflict_do_nothing(
            index_elements=[d.subscription_id, d.message_seq]
        )
        written = 0
        for chunk in _chunks(values, 500):
            written += self.conn.execute(stmt, list(chunk)).rowcount
        return written

    def any_due(self, now: datetime) -> bool:
        d = t.webhook_deliveries.c
        found = self.conn.execute(select(d.id).where(d.due_at <= now).limit(1)).first()
        return found is not None

    def due(self, subscription_id: str, now: datetime, limit: int) -> list[Delivery]:
        d = t.webhook_deliveries.c
        rows = self.conn.execute(
            select(t.webhook_deliveries)
            .where(d.subscription_id == subscription_id, d.due_at <= now)
            .order_by(d.due_at)
            .limit(limit)
        ).mappings()
        return [_delivery(r) for r in rows]

    def sending(self, now: datetime) -> dict[str, int]:
        d = t.webhook_deliveries.c
        rows = self.conn.execute(
            select(d.subscription_id, func.count())
            .where(d.status == "sending", d.due_at > now)
            .group_by(d.subscription_id)
        )
        return {sub: int(n) for sub, n in rows}

    def blocked(self, deliveries: Sequence[Delivery]) -> set[str]:
        if not deliveries:
            return set()
        d = t.webhook_deliveries.c
        earlier = aliased(t.webhook_deliveries)
        blocked: set[str] = set()
        for chunk in _chunks([x.id for x in deliveries]):
            rows = self.conn.execute(
                select(d.id).where(
                    d.id.in_(chunk),
                    exists().where(
                        and_(
                            earlier.c.subscription_id == d.subscription_id,
                            earlier.c.player_id == d.player_id,
                            earlier.c.message_seq < d.message_seq,
                            earlier.c.status.in_(UNFINISHED),
                        )
                    ),
                )
            )
            blocked.update(r[0] for r in rows)
        return blocked

    def claim(self, delivery_ids: Sequence[str], lease_until: datetime) -> None:
        d = t.webhook_deliveries.c
        for chunk in _chunks(list(delivery_ids)):
            self.conn.execute(
                update(t.webhook_deliveries)
                .where(d.id.in_(chunk))
                .values(status="sending", due_at=lease_until, attempts=d.attempts + 1)
            )

    def finish(self, updates: Sequence[DeliveryUpdate]) -> None:
        if not updates:
            return
        d = t.webhook_deliveries.c
        self.conn.execute(
            update(t.webhook_deliveries)
            # A delivery finished meanwhile (its subscription deleted) stays finished.
            .where(d.id == bindparam("b_id"), or_(d.status == "pending", d.status == "sending"))
            .values(
                status=bindparam("b_status"),
                due_at=bindparam("b_due_at"),
                last_error=bindparam("b_last_error"),
                finished_at=bindparam("b_finished_at"),
            ),
            [
                {
                    "b_id": u.delivery_id,
                    "b_status": u.status,
                    "b_due_at": u.due_at,
                    "b_last_error": u.last_error,
                    "b_finished_at": u.finished_at,
                }
                for u in updates
            ],
        )

    def log_attempts(self, tenant_id: str, rows: Sequence[AttemptRow]) -> None:
        if not rows:
            return
        self.conn.execute(
            t.webhook_attempts.insert(),
            [
                {
                    "tenant_id": tenant_id,
                    "subscription_id": r.subscription_id,
                    "delivery_id": r.delivery_id,
                    "message_id": r.message_id,
                    "number": r.number,
                    "started_at": r.started_at,
                    "status_code": r.status_code,
                    "latency_ms": r.latency_ms,
                    "error": r.error,
                    "excerpt": r.excerpt,
                }
                for r in rows
            ],
        )

    def deliveries(
        self,
        tenant_id: str,
        subscription_id: str,
        status: str | None,
        after_seq: int,
        limit: int,
    ) -> list[Delivery]:
        d = t.webhook_deliveries.c
        query = select(t.webhook_deliveries).where(
            d.tenant_id == tenant_id,
            d.subscription_id == subscription_id,
            d.message_seq > after_seq,
        )
        if status is not None:
            query = query.where(d.status == status)
        rows = self.conn.execute(query.order_by(d.message_seq).limit(limit)).mappings()
        return [_delivery(r) for r in rows]

    def delivery(self, tenant_id: str, delivery_id: str) -> Delivery | None:
        d = t.webhook_deliveries.c
        row = self.conn.execute(
            select(t.webhook_deliveries).where(d.tenant_id == tenant_id, d.id == delivery_id)
        ).first()
        return _delivery(row._mapping) if row else None

    def attempts(
        self,
        tenant_id: str,
        subscription_id: str,
        delivery_id: str | None,
        after_id: int,
        limit: int,
    ) -> list[tuple[int, AttemptRow]]:
        a = t.webhook_attempts.c
        query = select(t.webhook_attempts).where(
            a.tenant_id == tenant_id, a.subscription_id == subscription_id
        )
        if delivery_id is not None:
            query = query.where(a.delivery_id == delivery_id)
        if after_id:
            query = query.where(a.id < after_id)  # newest first
        rows = self.conn.execute(query.order_by(a.id.desc()).limit(limit)).mappings()
        return [
            (
                r["id"],
                AttemptRow(
                    delivery_id=r["delivery_id"],
                    subscription_id=r["subscription_id"],
                    message_id=r["message_id"],
                    number=r["number"],
                    started_at=r["started_at"],
                    status_code=r["status_code"],
                    latency_ms=r["latency_ms"],
                    error=r["error"],
                    excerpt=r["excerpt"],
                ),
            )
            for r in rows
        ]

    def redeliver(
        self, tenant_id: str, subscription_id: str, delivery_ids: Sequence[str] | None, at: datetime
    ) -> int:
        d = t.webhook_deliveries.c
        query = update(t.webhook_deliveries).where(
            d.tenant_id == tenant_id, d.subscription_id == subscription_id
        )
        if delivery_ids is None:
            query = query.where(d.status == "dead")
        else:
            query = query.where(d.id.in_(list(delivery_ids)), d.status.in_(("dead", "delivered")))
        result = self.conn.execute(
            query.values(status="pending", attempts=0, due_at=at, finished_at=None)
        )
        return int(result.rowcount)

    def purge(self, before: datetime) -> int:
        d, a = t.webhook_deliveries.c, t.webhook_attempts.c
        old = select(d.id).where(d.status == "delivered", d.finished_at < before)
        self.conn.execute(delete(t.webhook_attempts).where(a.delivery_id.in_(old)))
        result = self.conn.execute(
            delete(t.webhook_deliveries).where(d.status == "delivered", d.finished_at < before)
        )
        return int(result.rowcount)
