"""What Plaudit tells others, written to the outbox in the transaction of the effect.

Webhook subscriptions and players' live streams read the outbox; nothing here does I/O
beyond the unit of work it is given. Each message has a key naming what it reports, so
a retried transaction or a re-run job never tells the same thing twice.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from plaudit.rules.compiler import CompiledRuleSet
from plaudit.store.ports import AwardRow, LedgerRow, LevelUpRow, OutboxMessage, UnitOfWork

# Message types, with what each reports (listed by the API).
TYPES: Mapping[str, str] = {
    "badge.awarded": "a player earned a badge (or a tier of one), by a rule or by hand",
    "badge.revoked": "an award was revoked, with the reason",
    "level.reached": "a player reached a level of a currency",
    "points.awarded": "a balance changed (opt-in: one message per ledger entry)",
    "leaderboard.window_closed": "a leaderboard window closed, with its final top 10",
    "webhook.endpoint_disabled": "a webhook endpoint was disabled after failing for days",
}
# Points are chatty: a subscription gets them only when it names them.
DEFAULT_TYPES: tuple[str, ...] = tuple(t for t in TYPES if t != "points.awarded")
# What a player's live stream carries (rank changes are added live, not stored).
PLAYER_TYPES = frozenset({"badge.awarded", "badge.revoked", "level.reached"})


def starting_level(rules: CompiledRuleSet | None) -> bool:
    """Whether the first level's threshold is 0: every player starts there, so reaching it
    is not news (level.reached is told from the second level on)."""
    levels = rules.doc.levels if rules is not None else None
    return levels is not None and levels.thresholds[0].at == 0


def _iso(at: datetime | None) -> str | None:
    return at.isoformat().replace("+00:00", "Z") if at is not None else None


def award_message(award: AwardRow) -> OutboxMessage:
    key = (
        f"award:{award.event_id}:{award.badge_id}:{award.tier or ''}:{award.occurrence}"
        if award.event_id
        else f"award:{award.id}"
    )
    data: dict[str, Any] = {
        "award_id": award.id,
        "player_id": award.player_id,
        "badge_id": award.badge_id,
        "tier": award.tier,
        "occurrence": award.occurrence,
        "source": award.source,
        "event_id": award.event_id,
        "awarded_at": _iso(award.awarded_at),
        "expires_at": _iso(award.expires_at),
    }
    if award.ruleset_id is not None:
        data["ruleset"] = {"id": award.ruleset_id, "version": award.ruleset_version}
    if award.awarded_by is not None:
        data["awarded_by"] = award.awarded_by
    return OutboxMessage("badge.awarded", key, award.player_id, data)


def revocation_message(
    award: AwardRow | Mapping[str, Any], reason: str, actor: str, at: datetime
) -> OutboxMessage:
    fields = (
        award
        if isinstance(award, Mapping)
        else {
            "award_id": award.id,
            "player_id": award.player_id,
            "badge_id": award.badge_id,
            "tier": award.tier,
        }
    )
    data = {
        "award_id": fields["award_id"],
        "player_id": fields["player_id"],
        "badge_id": fields["badge_id"],
        "tier": fields.get("tier"),
        "reason": reason,
        "revoked_by": actor,
        "revoked_at": _iso(at),
    }
    return OutboxMessage("badge.revoked", f"revoke:{data['award_id']}", data["player_id"], data)


def level_message(row: LevelUpRow) -> OutboxMessage:
    return OutboxMessage(
        "level.reached",
        f"level:{row.player_id}:{row.currency}:{row.level_index}",
        row.player_id,
        {
            "player_id": row.player_id,
            "currency": row.currency,
            "level": row.level,
            "index": row.level_index,
            "event_id": row.event_id,
            "reached_at": _iso(row.reached_at),
        },
    )


def points_message(row: LedgerRow, at: datetime) -> OutboxMessage:
    # Rule entries are keyed like the ledger (event, rule, currency); others by their time.
    what = row.event_id or _iso(at)
    data: dict[str, Any] = {
        "player_id": row.player_id,
        "currency": row.currency,
        "amount": row.amount,
        "kind": row.kind,
        "rule_id": row.rule_id,
        "event_id": row.event_id,
        "occurred_at": _iso(row.occurred_at),
    }
    if row.ruleset_id is not None:
        data["ruleset"] = {"id": row.ruleset_id, "version": row.ruleset_version}
    if row.reason is not None:
        data["reason"] = row.reason
    return OutboxMessage(
        "points.awarded",
        f"points:{row.kind}:{row.player_id}:{what}:{row.rule_id}:{row.currency}",
        row.player_id,
        data,
    )


def window_closed_message(
    board_id: str,
    window: str,
    starts_at: datetime | None,
    ends_at: datetime | None,
    participants: int,
    top: Sequence[Mapping[str, Any]],
) -> OutboxMessage:
    return OutboxMessage(
        "leaderboard.window_closed",
        f"window:{board_id}:{window}",
        None,
        {
            "board_id": board_id,
            "window": window,
            "starts_at": _iso(starts_at),
            "ends_at": _iso(ends_at),
            "participants": participants,
            "top": list(top),
        },
    )


def endpoint_disabled_message(
    subscription_id: str, url: str, reason: str, at: datetime
) -> OutboxMessage:
    return OutboxMessage(
        "webhook.endpoint_disabled",
        f"disabled:{subscription_id}:{_iso(at)}",
        None,
        {
            "subscription_id": subscription_id,
            "url": url,
            "reason": reason,
            "disabled_at": _iso(at),
        },
    )


class Outbox:
    """Writes the messages of one transaction."""

    def __init__(self, uow: UnitOfWork, tenant_id: str, at: datetime) -> None:
        self.uow = uow
        self.tenant_id = tenant_id
        self.at = at

    def tell(self, messages: Iterable[OutboxMessage]) -> None:
        batch = list(messages)
        if batch:
            self.uow.outbox.add(self.tenant_id, batch, self.at)

    def awards(self, awards: Iterable[AwardRow]) -> None:
        self.tell(award_message(a) for a in awards)

    def levels(self, rows: Iterable[LevelUpRow], starting: bool = False) -> None:
        self.tell(level_message(r) for r in rows if not (starting and r.level_index == 0))

    def wants_points(self) -> bool:
        """Whether some enabled subscription of the tenant wants ledger entries."""
        return self.uow.webhooks.wants(self.tenant_id, "points.awarded")

    def points(self, rows: Sequence[LedgerRow]) -> None:
        if rows and self.wants_points():
            self.tell(points_message(r, self.at) for r in rows)
