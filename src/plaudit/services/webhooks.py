"""Webhook subscriptions: endpoints, the types they want, secrets and their rotation, and
what was delivered to them (deliveries, attempts, dead letters, redelivery)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

from plaudit.domain.clock import Clock
from plaudit.domain.ids import new_id
from plaudit.domain.pagination import Page, decode_position, page_of
from plaudit.errors import FieldError, InvalidInput, NotFound
from plaudit.rules.expressions import CompileError, compile_filter
from plaudit.services import audit
from plaudit.services.outbox import DEFAULT_TYPES, TYPES
from plaudit.store.ports import (
    AttemptRow,
    Database,
    Delivery,
    SecretRow,
    Subscription,
    UnitOfWork,
)
from plaudit.webhooks.signing import new_secret
from plaudit.webhooks.ssrf import UnsafeUrl, check_url

# An overlap longer than this would keep a leaked secret valid for too long.
MAX_OVERLAP = timedelta(days=7)
DELIVERY_STATUSES = ("pending", "sending", "delivered", "dead")


@dataclass(frozen=True, slots=True)
class Created:
    subscription: Subscription
    secret: str  # shown once here, and to admins through the secret endpoint


class WebhookService:
    def __init__(
        self, db: Database, clock: Clock, *, allow_loopback: bool, max_in_flight: int
    ) -> None:
        self.db = db
        self.clock = clock
        self.allow_loopback = allow_loopback
        self.max_in_flight = max_in_flight

    # -- subscriptions ---------------------------------------------------------------------

    def create(self, tenant_id: str, fields: Mapping[str, Any]) -> Created:
        now = self.clock()
        checked = self._checked(fields)
        sub = Subscription(
            id=new_id("whk"),
            tenant_id=tenant_id,
            url=checked["url"],
            event_types=checked.get("event_types", DEFAULT_TYPES),
            filter=checked.get("filter"),
            description=checked.get("description", ""),
            enabled=checked.get("enabled", True),
            ordered=checked.get("ordered", False),
            max_in_flight=checked.get("max_in_flight", self.max_in_flight),
            created_at=now,
            updated_at=now,
        )
        secret = new_secret()
        with self.db.write() as uow:
            uow.webhooks.save(sub)
            uow.webhooks.add_secret(tenant_id, sub.id, secret, now)
            audit.record(
                uow, tenant_id, "webhook.create", ("webhook", sub.id), now, after=_view(sub)
            )
            uow.commit()
        return Created(sub, secret)

    def all_of(self, tenant_id: str) -> list[Subscription]:
        with self.db.read() as uow:
            return uow.webhooks.subscriptions(tenant_id)

    def get(self, tenant_id: str, subscription_id: str) -> Subscription:
        with self.db.read() as uow:
            return _find(uow, tenant_id, subscription_id)

    def update(
        self, tenant_id: str, subscription_id: str, fields: Mapping[str, Any]
    ) -> Subscription:
        now = self.clock()
        checked = self._checked(fields)
        with self.db.write() as uow:
            old = sub = _find(uow, tenant_id, subscription_id)
            sub = replace(sub, updated_at=now, **checked)
            if checked.get("enabled") is True:
                # Enabled again by an admin: the failure streak starts afresh.
                sub = replace(sub, disabled_at=None, disabled_reason=None, failing_since=None)
            elif checked.get("enabled") is False and sub.disabled_at is None:
                sub = replace(sub, disabled_at=now, disabled_reason="disabled by an admin")
            uow.webhooks.save(sub)
            audit.record(
                uow,
                tenant_id,
                "webhook.update",
                ("webhook", sub.id),
                now,
                before=_view(old),
                after=_view(sub),
            )
            uow.commit()
        return sub

    def delete(self, tenant_id: str, subscription_id: str) -> None:
        with self.db.write() as uow:
            old = _find(uow, tenant_id, subscription_id)
            now = self.clock()
            uow.webhooks.delete(tenant_id, subscription_id, now)
            audit.record(
                uow,
                tenant_id,
                "webhook.delete",
                ("webhook", subscription_id),
                now,
                before=_view(old),
            )
            uow.commit()

    def _checked(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        out = dict(fields)
        if "url" in out:
            try:
                out["url"] = check_url(out["url"], allow_loopback=self.allow_loopback).url
            except UnsafeUrl as exc:
                raise InvalidInput(exc.detail, [FieldError("url", exc.detail)]) from None
        if "event_types" in out:
            types = out["event_types"]
            if types is None:
                out["event_types"] = DEFAULT_TYPES
            else:
                unknown = [
                    FieldError(f"event_types[{i}]", f"unknown type; one of: {', '.join(TYPES)}")
                    for i, name in enumerate(types)
                    if name not in TYPES
                ]
                if unknown:
                    raise InvalidInput("unknown event type", unknown)
                if not types:
                    raise InvalidInput(
                        "no event types", [FieldError("event_types", "name at least one")]
                    )
                out["event_types"] = tuple(dict.fromkeys(types))
        if out.get("filter") is not None:
            try:
                compile_filter(out["filter"])
            except CompileError as exc:
                raise InvalidInput(
                    f"filter does not compile: {exc}", [FieldError("filter", str(exc))]
                ) from None
        return out

    # -- secrets ---------------------------------------------------------------------------

    def secrets(self, tenant_id: str, subscription_id: str) -> list[SecretRow]:
        """The secrets that sign now (newest first; two during a rotation's overlap)."""
        now = self.clock()
        with self.db.read() as uow:
            _find(uow, tenant_id, subscription_id)
            rows = uow.webhooks.secret_rows(tenant_id, subscription_id)
        return [r for r in rows if r.expires_at is None or r.expires_at > now]

    def rotate(self, tenant_id: str, subscription_id: str, overlap: timedelta) -> SecretRow:
        """A new secret signs from now on; the old ones keep signing for ``overlap``, so the
        receiver can switch without rejecting a delivery."""
        if overlap < timedelta(0) or overlap > MAX_OVERLAP:
            raise InvalidInput(
                "overlap out of range",
                [FieldError("overlap", f"between 0 and {MAX_OVERLAP.days} days")],
            )
        now = self.clock()
        secret = new_secret()
        with self.db.write() as uow:
            _find(uow, tenant_id, subscription_id)
            uow.webhooks.expire_secrets(tenant_id, subscription_id, now + overlap)
            uow.webhooks.add_secret(tenant_id, subscription_id, secret, now)
            audit.record(  # never the secrets themselves
                uow,
                tenant_id,
                "webhook.rotate_secret",
                ("webhook", subscription_id),
                now,
                after={"old_secrets_expire_at": now + overlap},
            )
            uow.commit()
        return SecretRow(secret, now, None)

    # -- deliveries ------------------------------------------------------------------------

    def deliveries(
        self,
        tenant_id: str,
        subscription_id: str,
        status: str | None,
        cursor: str | None,
        limit: int,
    ) -> Page[Delivery]:
        if status is not None and status not in DELIVERY_STATUSES:
            raise InvalidInput(
                f"unknown status {status!r}",
                [FieldError("status", f"one of: {', '.join(DELIVERY_STATUSES)}")],
            )
        after = decode_position(cursor)
        with self.db.read() as uow:
            _find(uow, tenant_id, subscription_id)
            rows = uow.webhooks.deliveries(tenant_id, subscription_id, status, after, limit + 1)
        return page_of(rows, limit, lambda d: d.message_seq)

    def attempts(
        self,
        tenant_id: str,
        subscription_id: str,
        delivery_id: str | None,
        cursor: str | None,
        limit: int,
    ) -> Page[tuple[int, AttemptRow]]:
        """Attempts, newest first."""
        before = decode_position(cursor)
        with self.db.read() as uow:
            _find(uow, tenant_id, subscription_id)
            rows = uow.webhooks.attempts(tenant_id, subscription_id, delivery_id, before, limit + 1)
        return page_of(rows, limit, lambda r: r[0])

    def redeliver(
        self, tenant_id: str, subscription_id: str, delivery_ids: Sequence[str] | None
    ) -> int:
        """Queue again one finished delivery, or (``None``) every dead letter; the schedule
        starts over. Returns how many were queued."""
        with self.db.write() as uow:
            _find(uow, tenant_id, subscription_id)
            if delivery_ids is not None:
                for delivery_id in delivery_ids:
                    found = uow.webhooks.delivery(tenant_id, delivery_id)
                    if found is None or found.subscription_id != subscription_id:
                        raise NotFound(f"no delivery {delivery_id!r} for this subscription")
            now = self.clock()
            count = uow.webhooks.redeliver(tenant_id, subscription_id, delivery_ids, now)
            audit.record(
                uow,
                tenant_id,
                "webhook.redeliver",
                ("webhook", subscription_id),
                now,
                after={
                    "deliveries": list(delivery_ids or []) or "all dead letters",
                    "queued": count,
                },
            )
            uow.commit()
        return count


def _find(uow: UnitOfWork, tenant_id: str, subscription_id: str) -> Subscription:
    sub = uow.webhooks.get(tenant_id, subscription_id)
    if sub is None:
        raise NotFound(f"no webhook subscription {subscription_id!r}")
    return sub


def _view(sub: Subscription) -> dict[str, Any]:
    return {
        "url": sub.url,
        "event_types": list(sub.event_types),
        "filter": sub.filter,
        "description": sub.description,
        "enabled": sub.enabled,
        "ordered": sub.ordered,
        "max_in_flight": sub.max_in_flight,
    }
