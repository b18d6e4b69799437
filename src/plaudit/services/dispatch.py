"""Webhook dispatch, the part that touches the store: fan the outbox out to subscriptions,
claim the deliveries that are due, and record how each attempt ended.

One transaction per step does all three, so a busy dispatcher pays one commit for many
attempts. A claimed delivery holds a lease; if its dispatcher dies before recording the
outcome, the lease runs out and the message is sent again with the same webhook-id
(receivers dedupe on it). Nothing is lost: at least once, never zero times.
"""

from __future__ import annotations

import logging
import random
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

import orjson

from plaudit.domain.clock import Clock
from plaudit.domain.ids import new_id
from plaudit.rules.expressions import Compiled, EvaluationError, compile_filter, filter_activation
from plaudit.services import audit
from plaudit.services.outbox import endpoint_disabled_message
from plaudit.store.ports import (
    AttemptRow,
    Database,
    Delivery,
    DeliveryUpdate,
    StoredMessage,
    Subscription,
    UnitOfWork,
)
from plaudit.webhooks import signing
from plaudit.webhooks.schedule import next_attempt_delay, retry_after

log = logging.getLogger("plaudit.webhooks")

CURSOR = "webhooks"  # how far the outbox has been fanned out
FAN_OUT_BATCH = 1000
EXCERPT_MAX = 1000
# ``last_success_at`` is written at most this often per endpoint (not once per delivery).
_SUCCESS_STALE = timedelta(seconds=10)
_CACHE_TTL = 1.0  # seconds


@dataclass(frozen=True, slots=True)
class Job:
    """One attempt to make: where to, what (signed), and which delivery it serves."""

    delivery_id: str
    tenant_id: str
    subscription_id: str
    message_id: str
    number: int  # 1 for the first attempt
    url: str
    body: bytes
    headers: dict[str, str]


@dataclass(frozen=True, slots=True)
class Outcome:
    job: Job
    started_at: datetime
    latency_ms: float
    status: int | None = None  # None: no response (timeout, refused, unsafe address…)
    error: str | None = None
    excerpt: str | None = None
    retry_after: str | None = None  # the response's Retry-After header

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def render(message: StoredMessage) -> bytes:
    """The body every attempt of a message sends: the same bytes each time."""
    return orjson.dumps(
        {
            "type": message.type,
            "timestamp": message.created_at.isoformat().replace("+00:00", "Z"),
            "data": message.data,
        }
    )


class DispatchService:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        *,
        schedule: Sequence[timedelta],
        lease: timedelta,
        disable_after: timedelta,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.db = db
        self.clock = clock
        self.schedule = tuple(schedule)
        self.lease = lease
        self.disable_after = disable_after
        self.jitter = jitter
        self._filters: dict[str, Compiled] = {}
        # Subscriptions and secrets, read at most once a second (every round read them: a
        # third of a busy round). An admin's change reaches the dispatcher within that time.
        self.cache_ttl = _CACHE_TTL
        self._subs: tuple[float, dict[str, Subscription]] = (float("-inf"), {})
        self._secrets: dict[str, tuple[float, list[str]]] = {}

    def idle(self) -> bool:
        """Nothing to fan out and nothing due: lets a poller skip the write lock."""
        with self.db.read() as uow:
            if uow.outbox.last_seq() > uow.scoring.cursor(CURSOR):
                return False
            return not uow.webhooks.any_due(self.clock())

    def purge(self, retention: timedelta) -> int:
        before = self.clock() - retention
        with self.db.write() as uow:
            removed = uow.webhooks.purge(before) + uow.outbox.purge(before)
            uow.commit()
        return removed

    def step(self, outcomes: Sequence[Outcome], capacity: int) -> list[Job]:
        """Record ``outcomes``, fan out new messages, and claim up to ``capacity`` jobs.

        Not durable against a power cut: redoing a lost round only sends a message again
        (with its webhook-id), and the outbox it reads from is durable."""
        with self.db.write(durable=False) as uow:
            now = self.clock()
            subs = self._subscriptions(uow)
            self._record(uow, subs, outcomes, now)
            self._fan_out(uow, subs, now)
            jobs = self._claim(uow, subs, now, capacity) if capacity > 0 else []
            uow.commit()
        return jobs

    def _subscriptions(self, uow: UnitOfWork) -> dict[str, Subscription]:
        read_at, subs = self._subs
        if time.monotonic() - read_at >= self.cache_ttl:
            subs = {s.id: s for s in uow.webhooks.subscriptions(None)}
            self._subs = (time.monotonic(), subs)
        return subs

    def _signing(self, uow: UnitOfWork, sub_ids: set[str], now: datetime) -> dict[str, list[str]]:
        fresh = time.monotonic()
        found = {
            s: held[1]
            for s in sub_ids
            if (held := self._secrets.get(s)) is not None and fresh - held[0] < self.cache_ttl
        }
        missing = sub_ids - found.keys()
        if missing:
            for sub_id, secrets in uow.webhooks.secrets(missing, now).items():
                self._secrets[sub_id] = (fresh, secrets)
                found[sub_id] = secrets
        return found

    # -- fan-out ---------------------------------------------------------------------------

    def _fan_out(self, uow: UnitOfWork, subs: dict[str, Subscription], now: datetime) -> int:
        position = uow.scoring.cursor(CURSOR)
        messages = uow.outbox.after(position, FAN_OUT_BATCH)
        if not messages:
            return 0
        by_tenant: dict[str, list[Subscription]] = defaultdict(list)
        for sub in subs.values():
            if sub.enabled:
                by_tenant[sub.tenant_id].append(sub)
        rows = [
            Delivery(
                id=new_id("dlv"),
                tenant_id=m.tenant_id,
                subscription_id=sub.id,
                message_seq=m.seq,
                player_id=m.player_id,
                status="pending",
                attempts=0,
                due_at=now,
                last_error=None,
                created_at=now,
                finished_at=None,
            )
            for m in messages
            for sub in by_tenant.get(m.tenant_id, ())
            if m.type in sub.event_types and self._passes(sub, m)
        ]
        uow.webhooks.add_deliveries(rows)
        uow.scoring.set_cursor(CURSOR, messages[-1].seq)
        return len(rows)

    def _passes(self, sub: Subscription, message: StoredMessage) -> bool:
        if sub.filter is None:
            return True
        compiled = self._filters.get(sub.filter)
        if compiled is None:
            compiled = self._filters[sub.filter] = compile_filter(sub.filter)
        try:
            return compiled.evaluate(filter_activation(message.type, message.data)) is True
        except EvaluationError:
            return False  # e.g. a field this message type lacks: not a match

    # -- claiming --------------------------------------------------------------------------

    def _claim(
        self, uow: UnitOfWork, subs: dict[str, Subscription], now: datetime, capacity: int
    ) -> list[Job]:
        in_flight = uow.webhooks.sending(now)
        chosen: list[Delivery] = []
        # Endpoint by endpoint, each up to its free slots: a backlog at one does not hold
        # back the others.
        for sub in sorted(subs.values(), key=lambda s: in_flight.get(s.id, 0)):
            free = min(sub.max_in_flight - in_flight.get(sub.id, 0), capacity - len(chosen))
            if not sub.enabled or free <= 0:
                continue
            due = uow.webhooks.due(sub.id, now, free * 4 if sub.ordered else free)
            if sub.ordered:
                due = self._heads(uow, due)
            # (A delivery whose lease ran out is due again, and no longer counts as under way.)
            chosen.extend(due[:free])
            if len(chosen) >= capacity:
                break
        messages = uow.outbox.get_many(d.message_seq for d in chosen)
        secrets = self._signing(uow, {d.subscription_id for d in chosen}, now)
        lost = [
            DeliveryUpdate(d.id, "dead", None, "message no longer in the outbox", now)
            for d in chosen
            if d.message_seq not in messages
        ]
        uow.webhooks.finish(lost)
        chosen = [d for d in chosen if d.message_seq in messages]
        uow.webhooks.claim([d.id for d in chosen], now + self.lease)
        stamp = int(now.timestamp())
        jobs = []
        for d in chosen:
            message = messages[d.message_seq]
            body = render(message)
            headers = signing.headers(secrets[d.subscription_id], message.id, stamp, body)
            headers["content-type"] = "application/json"
            jobs.append(
                Job(
                    delivery_id=d.id,
                    tenant_id=d.tenant_id,
                    subscription_id=d.subscription_id,
                    message_id=message.id,
                    number=d.attempts + 1,
                    url=subs[d.subscription_id].url,
                    body=body,
                    headers=headers,
                )
            )
        return jobs

    @staticmethod
    def _heads(uow: UnitOfWork, due: list[Delivery]) -> list[Delivery]:
        """Of an ordered subscription's due deliveries, each player's earliest, and only
        when no earlier one of that player is still undelivered."""
        blocked = uow.webhooks.blocked([d for d in due if d.player_id])
        heads: set[str | None] = set()
        out = []
        for d in due:
            if d.id in blocked or (d.player_id is not None and d.player_id in heads):
                continue
            if d.player_id is not None:
                heads.add(d.player_id)
            out.append(d)
        return out

    # -- recording -------------------------------------------------------------------------

    def _record(
        self,
        uow: UnitOfWork,
        subs: dict[str, Subscription],
        outcomes: Sequence[Outcome],
        now: datetime,
    ) -> None:
        if not outcomes:
            return
        updates: list[DeliveryUpdate] = []
        changed: dict[str, Subscription] = {}
        by_tenant: dict[str, list[AttemptRow]] = defaultdict(list)
        for o in outcomes:
            job = o.job
            by_tenant[job.tenant_id].append(
                AttemptRow(
                    delivery_id=job.delivery_id,
                    subscription_id=job.subscription_id,
                    message_id=job.message_id,
                    number=job.number,
                    started_at=o.started_at,
                    status_code=o.status,
                    latency_ms=round(o.latency_ms, 3),
                    error=o.error[:500] if o.error else None,
                    excerpt=o.excerpt[:EXCERPT_MAX] if o.excerpt else None,
                )
            )
            sub = changed.get(job.subscription_id) or subs.get(job.subscription_id)
            if o.ok:
                updates.append(DeliveryUpdate(job.delivery_id, "delivered", None, None, now))
                if sub is not None and (
                    sub.failing_since is not None
                    or sub.last_success_at is None
                    or now - sub.last_success_at >= _SUCCESS_STALE
                ):
                    changed[sub.id] = replace(sub, failing_since=None, last_success_at=now)
                continue
            reason = f"HTTP {o.status}" if o.status is not None else (o.error or "failed")
            updates.append(self._failed(job, o, reason, now))
            if sub is None:
                continue
            sub = replace(sub, failing_since=sub.failing_since or o.started_at)
            if sub.enabled and o.status == 410:
                sub = self._disable(uow, sub, "the endpoint answered 410 Gone", now)
            elif (
                sub.enabled and sub.failing_since and now - sub.failing_since >= self.disable_after
            ):
                since = sub.failing_since.isoformat()
                sub = self._disable(uow, sub, f"every attempt failed since {since}", now)
            changed[sub.id] = sub
        uow.webhooks.finish(updates)
        for tenant_id, rows in by_tenant.items():
            uow.webhooks.log_attempts(tenant_id, rows)
        for sub in changed.values():
            uow.webhooks.save(sub)
            subs[sub.id] = sub

    def _failed(self, job: Job, o: Outcome, reason: str, now: datetime) -> DeliveryUpdate:
        if o.status == 410:
            # The endpoint is disabled; the message waits for it to be enabled again.
            return DeliveryUpdate(job.delivery_id, "pending", now, reason, None)
        delay = next_attempt_delay(job.number, self.schedule, self.jitter)
        if delay is None:
            return DeliveryUpdate(
                job.delivery_id, "dead", None, f"{reason} (all {job.number} attempts failed)", now
            )
        if o.status in (429, 503):
            asked = retry_after(o.retry_after, now)
            if asked is not None:
                delay = max(delay, asked)
        return DeliveryUpdate(job.delivery_id, "pending", now + delay, reason, None)

    def _disable(
        self, uow: UnitOfWork, sub: Subscription, reason: str, now: datetime
    ) -> Subscription:
        log.warning("webhook endpoint %s (%s) disabled: %s", sub.id, sub.url, reason)
        audit.record(
            uow,
            sub.tenant_id,
            "webhook.disable",
            ("webhook", sub.id),
            now,
            before={"enabled": True},
            after={"enabled": False, "reason": reason},
        )
        uow.outbox.add(
            sub.tenant_id, [endpoint_disabled_message(sub.id, sub.url, reason, now)], now
        )
        return replace(sub, enabled=False, disabled_at=now, disabled_reason=reason, updated_at=now)
