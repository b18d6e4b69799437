"""The evaluator: (compiled rule set, player state, event) -> effects. Deterministic, no I/O.

The caller hands the state over: ``evaluate`` updates it in place (copying it for every
event would cost more than the evaluation) and returns the effects in the order they
happened. Every timestamp in an effect derives from the event, never from a clock, so
replaying the log reproduces the effects exactly.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import cached_property
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from plaudit.domain.events import StoredEvent
from plaudit.domain.players import Player
from plaudit.rules.calendar import local_date, period_key, week_number
from plaudit.rules.compiler import (
    DECIMALS,
    CompiledBadge,
    CompiledBoard,
    CompiledPointsRule,
    CompiledRuleSet,
    MeasuredCriterion,
)
from plaudit.rules.effects import (
    BadgeAwarded,
    BoardScored,
    Effect,
    LevelReached,
    PointsAwarded,
    RuleFailed,
)
from plaudit.rules.expressions import Activation, Compiled, EvaluationError, activation
from plaudit.rules.model import (
    All,
    Any_,
    Count,
    Criterion,
    Distinct,
    First,
    HasBadge,
    Points,
    Streak,
    Sum,
    Window,
    measure_of,
)
from plaudit.rules.state import BadgeHolding, PlayerState

# Calendar-period buckets kept per measure. Rolling buckets are kept for the window plus a
# grace of the same length (at least 30 days): an event later than that behind the newest
# one no longer counts toward a rolling window (the documented late-event policy).
_PERIODS_KEPT = 8
_MIN_GRACE_DAYS = 30
_CAP_PERIODS_KEPT = 4


class EventLike(Protocol):
    """What the rules may read of an event: an ``EventFacts``, or a logged ``StoredEvent`` as
    it is (scoring does not copy each event it reads from the log)."""

    @property
    def id(self) -> str: ...
    @property
    def type(self) -> str: ...
    @property
    def source(self) -> str: ...
    @property
    def actor(self) -> str: ...
    @property
    def occurred_at(self) -> datetime: ...
    @property
    def properties(self) -> Mapping[str, Any]: ...


@dataclass(frozen=True, slots=True)
class EventFacts:
    id: str
    type: str
    source: str
    actor: str
    occurred_at: datetime
    properties: Mapping[str, Any]

    @classmethod
    def of(cls, event: StoredEvent) -> EventFacts:
        return cls(
            event.id, event.type, event.source, event.actor, event.occurred_at, event.properties
        )


@dataclass(frozen=True, slots=True)
class PlayerFacts:
    id: str
    attributes: Mapping[str, Any] = field(default_factory=dict)
    time_zone: str | None = None

    @classmethod
    def of(cls, player: Player | None, player_id: str) -> PlayerFacts:
        """What the rules may read of a player (nothing of one not on file)."""
        if player is None:
            return cls(player_id)
        return cls(player.id, player.attributes, player.time_zone)


class _Context:
    """Per-event values computed at most once: local day, CEL activation."""

    def __init__(self, rules: CompiledRuleSet, event: EventLike, player: PlayerFacts) -> None:
        self.rules = rules
        self.event = event
        self.player = player
        self.week_start = rules.doc.program.week_start
        self._activation: Activation | None = None

    @cached_property
    def day(self) -> date:
        """The event's day in the player's time zone (else the program's); computed only for
        what needs it (caps, windows, streaks): most events of most rules do not."""
        return local_date(self.event.occurred_at, zone_for(self.player.time_zone, self.rules.zone))

    def eval(self, expression: Compiled) -> Any:
        native = expression.native
        if native is not None:  # no activation to build: the closures read the facts
            return native(self.event, self.player)
        if self._activation is None:
            e, p = self.event, self.player
            self._activation = activation(
                {
                    "id": e.id,
                    "type": e.type,
                    "source": e.source,
                    "actor": e.actor,
                    "occurred_at": e.occurred_at.isoformat(),
                    "properties": e.properties,
                },
                {"id": p.id, "attributes": p.attributes, "time_zone": p.time_zone or ""},
            )
        return expression.evaluate(self._activation)

    def matches(self, when: Compiled | None) -> bool:
        if when is None:
            return True
        result = self.eval(when)
        if not isinstance(result, bool):
            raise EvaluationError(f"the condition gave {result!r}, not true or false")
        return result

    def period(self, period: str) -> str:
        return period_key(self.day, period, self.week_start)


def zone_for(name: str | None, default: ZoneInfo) -> ZoneInfo:
    if not name:
        return default
    try:
        return ZoneInfo(name)
    except (KeyError, ValueError):
        return default


def evaluate(
    rules: CompiledRuleSet, state: PlayerState, event: EventLike, player: PlayerFacts
) -> list[Effect]:
    ctx = _Context(rules, event, player)
    effects: list[Effect] = []
    points_rules = rules.points_by_type.get(event.type, ())
    verdicts = _verdicts(ctx, rules.conditions_by_type.get(event.type), len(points_rules))
    for i, rule in enumerate(points_rules):
        if verdicts is None:
            effects.extend(_apply_points_rule(ctx, rule, state))
        elif verdicts[i]:  # most rules of a type do not match: not even called
            effects.extend(_apply_points_rule(ctx, rule, state, True))
    points_changed = any(type(e) is PointsAwarded for e in effects)
    if points_changed:
        effects.extend(_levels(rules, state))
    touched: set[str] = set()
    for badge, leaf in rules.leaves_by_type.get(event.type, ()):
        try:
            if ctx.matches(leaf.matcher.when if leaf.matcher else None):
                _record(ctx, leaf, state)
                touched.add(badge.badge.id)
        except EvaluationError as exc:
            effects.append(RuleFailed(f"badge:{badge.badge.id}", str(exc)))
    awarded_any = False
    for badge in rules.badges_by_type.get(event.type, rules.badges_on_change):
        relevant = (
            badge.badge.id in touched
            or (points_changed and badge.uses_points)
            or (awarded_any and badge.uses_badges)
        )
        if relevant:
            awards = _award(ctx, badge, state)
            awarded_any = awarded_any or bool(awards)
            effects.extend(awards)
    if rules.boards:
        effects.extend(_boards(ctx, effects))
    return effects


# --- leaderboards -------------------------------------------------------------------------


def _boards(ctx: _Context, effects: list[Effect]) -> list[Effect]:
    """What the event moves on each board: its points in a currency, or 1 (count) or a
    property's value (sum) when it matches; for the player, or for the player's group."""
    points: dict[str, float] = {}
    for effect in effects:
        if isinstance(effect, PointsAwarded):
            points[effect.currency] = round(
                points.get(effect.currency, 0.0) + effect.amount, DECIMALS
            )
    rules = ctx.rules
    candidates = list(rules.boards_by_type.get(ctx.event.type, ()))
    for currency, total in points.items():
        if total:
            candidates.extend(rules.boards_by_currency.get(currency, ()))
    out: list[Effect] = []
    for compiled in candidates:
        board = compiled.board
        try:
            amount = _board_amount(ctx, compiled, points)
        except EvaluationError as exc:
            out.append(RuleFailed(f"board:{board.id}", str(exc)))
            continue
        if not amount:
            continue
        if board.group_by is None:
            subject: str | None = ctx.player.id
        else:
            subject = group_name(ctx.player.attributes.get(board.group_by))
        if subject is not None:
            out.append(BoardScored(board.id, subject, amount))
    return out


def _board_amount(ctx: _Context, compiled: CompiledBoard, points: dict[str, float]) -> float:
    """0 when the event does not count on the board."""
    if compiled.matcher is None:
        amount = points[compiled.board.metric.currency or ""]
    elif not ctx.matches(compiled.matcher.when):
        return 0.0
    elif compiled.value is None:
        amount = 1.0
    else:
        amount = _amount(ctx, compiled.value, allow_negative=True)
    if compiled.where is not None and not _member(ctx, compiled.where):
        return 0.0
    return amount


def _member(ctx: _Context, where: Compiled) -> bool:
    """A filter on attributes: a player without the attribute it reads is not a member (a
    rule error per event for every such player would drown the real ones)."""
    try:
        return ctx.matches(where)
    except EvaluationError:
        return False


def group_name(value: Any) -> str | None:
    """A group is named by a string or a number; a player without one is in no group."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return None
    name = str(value).strip()
    return name[:200] or None


# --- points -------------------------------------------------------------------------------


def _verdicts(ctx: _Context, combined: Compiled | None, count: int) -> list[bool] | None:
    """Every points rule's condition in one evaluation; None when any of them fails or is
    not a boolean (each is then evaluated alone, so the failure is the rule's own error)."""
    if combined is None:
        return None
    try:
        values = ctx.eval(combined)
    except EvaluationError:
        return None
    if len(values) != count or not all(isinstance(v, bool) for v in values):
        return None
    return list(values)


def _apply_points_rule(
    ctx: _Context, compiled: CompiledPointsRule, state: PlayerState, matched: bool | None = None
) -> list[Effect]:
    rule = compiled.rule
    try:
        if not (ctx.matches(compiled.matcher.when) if matched is None else matched):
            return []
        obj = None
        if compiled.once_per is not None:
            obj = _object_key(ctx.eval(compiled.once_per))
            if obj in state.once.get(rule.id, ()):
                return []
        amounts = {
            currency: _amount(ctx, amount, rule.allow_negative)
            for currency, amount in compiled.amounts.items()
        }
    except EvaluationError as exc:
        return [RuleFailed(rule.id, str(exc))]
    if rule.cap is not None:
        key = f"{rule.id}|{ctx.period(rule.cap.per)}"
        used = state.caps.get(key)
        if used is None:  # a new period: forget the oldest beyond the few kept
            used = state.caps[key] = {}
            _prune_caps(state, rule.id)
        for currency, limit in rule.cap.max.items():
            if currency in amounts and amounts[currency] > 0:
                allowed = max(0.0, round(limit - used.get(currency, 0.0), DECIMALS))
                amounts[currency] = min(amounts[currency], allowed)
                used[currency] = round(used.get(currency, 0.0) + amounts[currency], DECIMALS)
    if obj is not None:
        state.once.setdefault(rule.id, set()).add(obj)
    effects: list[Effect] = []
    for currency, amount in amounts.items():
        if amount == 0:
            continue
        state.balances[currency] = round(state.balances.get(currency, 0.0) + amount, DECIMALS)
        effects.append(PointsAwarded(rule.id, currency, amount))
    return effects


def _amount(ctx: _Context, amount: float | Compiled, allow_negative: bool) -> float:
    if isinstance(amount, float):
        return amount  # a constant, checked and rounded when the rule set was compiled
    value = ctx.eval(amount)
    t = type(value)
    if t is not float and t is not int:  # a bool is not an amount either
        raise EvaluationError(f"the amount is {value!r}, not a number")
    if not math.isfinite(value):
        raise EvaluationError(f"the amount is {value!r}")
    if value < 0 and not allow_negative:
        raise EvaluationError(f"the amount is negative ({value}) and the rule does not allow it")
    return round(float(value), DECIMALS)


def _object_key(value: Any) -> str:
    if isinstance(value, bool | int | float | str):
        return str(value)
    raise EvaluationError(f"once_per gave {value!r}; it must name an object (a string or number)")


def _prune_caps(state: PlayerState, rule_id: str) -> None:
    keys = sorted(k for k in state.caps if k.startswith(rule_id + "|"))
    for old in keys[:-_CAP_PERIODS_KEPT]:
        del state.caps[old]


def _levels(rules: CompiledRuleSet, state: PlayerState) -> list[Effect]:
    levels = rules.doc.levels
    if levels is None:
        return []
    index = level_index(rules, state.balances.get(levels.currency, 0.0))
    effects: list[Effect] = [
        LevelReached(levels.currency, levels.thresholds[i].name, i)
        for i in range(state.level + 1, index + 1)
    ]
    state.level = index
    return effects


def level_index(rules: CompiledRuleSet, balance: float) -> int:
    levels = rules.doc.levels
    if levels is None:
        return -1
    return sum(1 for level in levels.thresholds if balance >= level.at) - 1


# --- badge measures ----------------------------------------------------------------------


def _record(ctx: _Context, leaf: MeasuredCriterion, state: PlayerState) -> None:
    record = leaf.record
    if record is None:
        record = leaf.record = _recorder(leaf)
    record(ctx, state)


def _recorder(leaf: MeasuredCriterion) -> Callable[[_Context, PlayerState], None]:
    """How an event that matches the leaf changes its measure, decided once per leaf (a
    count without a window, the usual leaf, adds 1 to its total)."""
    key = leaf.key
    if isinstance(leaf.criterion, Count) and criterion_window(leaf.criterion) is None:

        def count(ctx: _Context, state: PlayerState) -> None:
            measure = state.measures.get(key)
            if measure is None:
                measure = state.measures[key] = {}
            measure["total"] = round(measure.get("total", 0.0) + 1.0, DECIMALS)

        return count
    return lambda ctx, state: _record_any(ctx, leaf, state)


def _record_any(ctx: _Context, leaf: MeasuredCriterion, state: PlayerState) -> None:
    criterion = leaf.criterion
    measure = state.measures.setdefault(leaf.key, {})
    if isinstance(criterion, Streak):
        unit = _unit(ctx.day, criterion.streak.unit, ctx.week_start)
        units: list[int] = measure.setdefault("units", [])
        if unit not in units:
            units.append(unit)
            units.sort()
        return
    if isinstance(criterion, First):
        measure["total"] = 1
        return
    window = criterion_window(criterion)
    if isinstance(criterion, Sum | Distinct):
        assert leaf.value is not None
        value = ctx.eval(leaf.value)
        if isinstance(criterion, Sum):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise EvaluationError(f"the summed property is {value!r}, not a number")
            _add(ctx, measure, window, round(float(value), DECIMALS))
        else:
            _add_distinct(ctx, measure, window, _object_key(value))
        return
    _add(ctx, measure, window, 1.0)


def _bucket(
    ctx: _Context, measure: dict[str, Any], window: Window | None
) -> tuple[dict[str, Any], str]:
    if window is None:
        return measure, "total"
    if window.period is not None:
        return measure.setdefault("periods", {}), ctx.period(window.period)
    return measure.setdefault("days", {}), str(ctx.day.toordinal())


def _add(ctx: _Context, measure: dict[str, Any], window: Window | None, value: float) -> None:
    buckets, key = _bucket(ctx, measure, window)
    buckets[key] = round(buckets.get(key, 0.0) + value, DECIMALS)
    _prune(buckets, window)


def _add_distinct(
    ctx: _Context, measure: dict[str, Any], window: Window | None, value: str
) -> None:
    buckets, key = _bucket(ctx, measure, window)
    values: list[str] = buckets.setdefault(key, [])
    if value not in values:
        values.append(value)
    _prune(buckets, window)


def _prune(buckets: dict[str, Any], window: Window | None) -> None:
    if window is None:
        return
    if window.period is not None:
        for old in sorted(buckets, key=_period_sort_key)[:-_PERIODS_KEPT]:
            del buckets[old]
        return
    assert window.rolling is not None
    newest = max(int(k) for k in buckets)
    days = window.rolling.days
    keep_from = newest - days - max(days, _MIN_GRACE_DAYS)
    for k in [k for k in buckets if int(k) < keep_from]:
        del buckets[k]


def _period_sort_key(key: str) -> tuple[int, str]:
    return (len(key), key)


def _unit(day: date, unit: str, week_start: str) -> int:
    return day.toordinal() if unit == "day" else week_number(day, week_start)


def measure_value(
    criterion: Criterion, measure: Mapping[str, Any], day: date, week_start: str, best: bool
) -> float:
    """The criterion's measure as of ``day``. With ``best`` a rolling window or streak takes
    the best window containing ``day`` (the outcome then ignores the order events arrived in);
    without it, the one ending on ``day`` (progress shown to a player now)."""
    if isinstance(criterion, First):
        return float(measure.get("total", 0))
    if isinstance(criterion, Streak):
        spec = criterion.streak
        unit = _unit(day, spec.unit, week_start)
        return float(_streak(measure.get("units", []), unit, spec.freezes, best))
    spec_window = criterion_window(criterion)
    distinct = isinstance(criterion, Distinct)
    if spec_window is None:
        return _size(measure.get("total", [] if distinct else 0.0), distinct)
    if spec_window.period is not None:
        key = period_key(day, spec_window.period, week_start)
        return _size(measure.get("periods", {}).get(key, [] if distinct else 0.0), distinct)
    assert spec_window.rolling is not None
    days = {int(k): v for k, v in measure.get("days", {}).items()}
    length = spec_window.rolling.days
    end = day.toordinal()
    last_end = max([end, *days]) if best else end
    last_end = min(last_end, end + length - 1)
    values = []
    for window_end in range(end, last_end + 1):
        inside = [v for k, v in days.items() if window_end - length < k <= window_end]
        if distinct:
            values.append(float(len({x for bucket in inside for x in bucket})))
        else:
            values.append(round(sum(inside), DECIMALS))
    return max(values, default=0.0)


def _size(value: Any, distinct: bool) -> float:
    return float(len(value)) if distinct else float(value)


def _streak(units: list[int], unit: int, freezes: int, best: bool) -> int:
    """Active units in the longest run that contains ``unit`` (or, for progress, that ends
    at ``unit`` or the unit before it), bridging at most ``freezes`` missing units."""
    if not best and unit not in units:
        unit -= 1  # today not done yet: the streak still stands on yesterday
    if unit not in units:
        return 0
    best_run = 0
    i = 0
    for j in range(len(units)):
        while (units[j] - units[i] + 1) - (j - i + 1) > freezes:
            i += 1
        contains = units[i] <= unit <= units[j]
        ends_here = units[j] == unit
        if contains if best else ends_here:
            best_run = max(best_run, j - i + 1)
    return best_run


# --- awarding ----------------------------------------------------------------------------


def holds_badge(state: PlayerState, badge_id: str, at: datetime) -> bool:
    holding = state.badges.get(badge_id)
    return holding is not None and holding.count > 0 and not _expired(holding, at)


def _expired(holding: BadgeHolding, at: datetime) -> bool:
    return holding.expires_at is not None and datetime.fromisoformat(holding.expires_at) <= at


def criterion_value(
    ctx_state: tuple[PlayerState, date, str, datetime],
    criterion: Criterion,
    key: str,
    best: bool,
) -> tuple[bool, float | None]:
    """(satisfied, measure) of a criterion; the measure is None for all/any/badge."""
    state, day, week_start, at = ctx_state
    if isinstance(criterion, All | Any_):
        children = criterion.all if isinstance(criterion, All) else criterion.any
        results = [
            criterion_value(ctx_state, child, f"{key}/{i}", best)[0]
            for i, child in enumerate(children)
        ]
        return (all(results) if isinstance(criterion, All) else any(results)), None
    if isinstance(criterion, HasBadge):
        return holds_badge(state, criterion.badge, at), None
    if isinstance(criterion, Points):
        balance = state.balances.get(criterion.points.currency, 0.0)
        threshold = criterion.points.at_least
        return (threshold is not None and balance >= threshold), balance
    value = measure_value(criterion, state.measures.get(key, {}), day, week_start, best)
    target = criterion_target(criterion)
    return (target is not None and value >= target), value


Plan = Callable[[PlayerState, _Context], tuple[bool, float | None]]


def criterion_plan(criterion: Criterion, key: str) -> Plan:
    """``criterion_value(..., best=True)`` as a closure built once per badge: the kind of
    each criterion is looked at here, not at every event that may award the badge."""
    if isinstance(criterion, All | Any_):
        combine = all if isinstance(criterion, All) else any
        children = criterion.all if isinstance(criterion, All) else criterion.any
        plans = [criterion_plan(child, f"{key}/{i}") for i, child in enumerate(children)]

        def combined(state: PlayerState, ctx: _Context) -> Any:
            return combine(plan(state, ctx)[0] for plan in plans), None

        return combined
    if isinstance(criterion, HasBadge | Points):
        return lambda state, ctx: criterion_value(
            (state, ctx.day, ctx.week_start, ctx.event.occurred_at), criterion, key, True
        )
    target = criterion_target(criterion)
    if isinstance(criterion, Count | Sum) and criterion_window(criterion) is None:

        def total(state: PlayerState, ctx: _Context) -> Any:
            measure = state.measures.get(key)
            value = float(measure.get("total", 0.0)) if measure else 0.0
            return (target is not None and value >= target), value

        return total

    def measured(state: PlayerState, ctx: _Context) -> Any:
        measure = state.measures.get(key, {})
        value = measure_value(criterion, measure, ctx.day, ctx.week_start, True)
        return (target is not None and value >= target), value

    return measured


def criterion_window(criterion: Criterion) -> Window | None:
    """The criterion's window (rolling or calendar), None for all time or no measure."""
    window: Window | None = getattr(measure_of(criterion), "window", None)
    return window


def criterion_target(criterion: Criterion) -> float | None:
    """The threshold a criterion's measure must reach (None when it has none, e.g. tiers)."""
    if isinstance(criterion, Streak):
        return criterion.streak.length
    if isinstance(criterion, First):
        return 1.0
    if isinstance(criterion, Points):
        return criterion.points.at_least
    target: float | None = getattr(measure_of(criterion), "at_least", None)
    return target


def _award(ctx: _Context, compiled: CompiledBadge, state: PlayerState) -> list[Effect]:
    badge = compiled.badge
    at = ctx.event.occurred_at
    holding = state.badges.get(badge.id)
    if holding is not None and _expired(holding, at):
        holding = None
        del state.badges[badge.id]
    plan = compiled.plan
    if plan is None:
        plan = compiled.plan = criterion_plan(badge.criteria, badge.id)
    satisfied, value = plan(state, ctx)
    effects: list[Effect] = []

    def give(tier: str | None) -> None:
        nonlocal holding
        if holding is None:
            holding = state.badges.setdefault(badge.id, BadgeHolding())
        holding.count += 1
        expires = at + badge.expires_after if badge.expires_after else None
        holding.expires_at = expires.isoformat() if expires else None
        if tier is not None:
            holding.tiers.append(tier)
        effects.append(BadgeAwarded(badge.id, tier, holding.count, at, expires))

    if badge.tiers is not None:
        for tier in badge.tiers:
            if (
                value is not None
                and value >= tier.at_least
                and (holding is None or tier.name not in holding.tiers)
            ):
                give(tier.name)
    elif badge.repeatable:
        spec = measure_of(badge.criteria)
        target = getattr(spec, "at_least", None)
        window = getattr(spec, "window", None)
        if value is None or target is None:
            return effects
        if window is None:
            while (holding.count if holding else 0) < int(value // target):
                give(None)
        elif value >= target:
            key = ctx.period(window.period)
            if holding is None or key not in holding.periods:
                give(None)
                assert holding is not None
                holding.periods.append(key)
                del holding.periods[:-_PERIODS_KEPT]
    elif satisfied and holding is None:
        give(None)
    return effects


def adjust(
    rules: CompiledRuleSet | None,
    state: PlayerState,
    currency: str,
    amount: float,
    at: datetime,
    player: PlayerFacts,
) -> list[Effect]:
    """A manual adjustment: the balance moves, and levels or points badges may follow."""
    state.balances[currency] = round(state.balances.get(currency, 0.0) + amount, DECIMALS)
    if rules is None:
        return []
    effects = _levels(rules, state)
    zone = zone_for(player.time_zone, rules.zone)
    ctx = _Context(
        rules,
        EventFacts("", "", "", "", at, {}),
        PlayerFacts(player.id, player.attributes, zone.key),
    )
    awarded_any = False
    for badge in rules.badges:
        if badge.uses_points or (awarded_any and badge.uses_badges):
            awards = _award(ctx, badge, state)
            awarded_any = awarded_any or bool(awards)
            effects.extend(awards)
    if rules.boards_by_currency:
        effects.extend(_boards(ctx, [PointsAwarded("adjustment", currency, amount)]))
    return effects
