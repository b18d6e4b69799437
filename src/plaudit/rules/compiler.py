"""Compile a rule-set document once per version: CEL compiled, rules indexed by event type."""

from __future__ import annotations

import math
import zoneinfo
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from plaudit.rules.expressions import Compiled, CompileError, compile_expression
from plaudit.rules.model import (
    All,
    Any_,
    Badge,
    Count,
    Criterion,
    Distinct,
    First,
    HasBadge,
    Leaderboard,
    Matcher,
    Points,
    PointsRule,
    RuleSet,
    Streak,
    Sum,
)

# Amounts and balances keep 4 decimals: sums are then exact whatever the order of events.
DECIMALS = 4


@dataclass(frozen=True, slots=True)
class Problem:
    """One reason a rule set is invalid (or, for warnings, suspicious)."""

    rule: str  # rule or badge id ("" for the document)
    field: str  # dotted path inside the document
    message: str


class RuleSetInvalid(Exception):
    def __init__(self, problems: list[Problem]) -> None:
        super().__init__(
            "; ".join(f"{p.rule or 'rule set'}: {p.field}: {p.message}" for p in problems)
        )
        self.problems = problems


@dataclass(eq=False)
class CompiledMatcher:
    event_types: tuple[str, ...]
    when: Compiled | None


@dataclass(eq=False)
class CompiledPointsRule:
    rule: PointsRule
    matcher: CompiledMatcher
    amounts: dict[str, float | Compiled]
    once_per: Compiled | None


@dataclass(eq=False)
class MeasuredCriterion:
    """A leaf criterion that keeps a measure in the player state under ``key``."""

    key: str
    criterion: Criterion
    matcher: CompiledMatcher | None  # None for points thresholds
    value: Compiled | None  # sum/distinct property
    record: Any = None  # how a matching event changes the measure (set by the evaluator)


@dataclass(eq=False)
class CompiledBadge:
    badge: Badge
    leaves: list[MeasuredCriterion]
    by_key: dict[str, MeasuredCriterion]
    uses_points: bool = False  # re-check when a balance moves
    uses_badges: bool = False  # re-check when another badge is awarded
    plan: Any = None  # whether the criteria hold, and the measure (set by the evaluator)


@dataclass(eq=False)
class CompiledBoard:
    board: Leaderboard
    matcher: CompiledMatcher | None  # count/sum boards; None for a currency's points
    value: Compiled | None  # sum boards
    where: Compiled | None
    zone: zoneinfo.ZoneInfo
    week_start: str


@dataclass(eq=False)
class CompiledRuleSet:
    doc: RuleSet
    zone: zoneinfo.ZoneInfo
    points_by_type: dict[str, list[CompiledPointsRule]]
    badges: list[CompiledBadge]  # dependencies first
    leaves_by_type: dict[str, list[tuple[CompiledBadge, MeasuredCriterion]]]
    badge_index: dict[str, CompiledBadge] = field(default_factory=dict)
    boards: dict[str, CompiledBoard] = field(default_factory=dict)
    boards_by_type: dict[str, list[CompiledBoard]] = field(default_factory=dict)
    boards_by_currency: dict[str, list[CompiledBoard]] = field(default_factory=dict)
    # Per event type, the conditions of its points rules as one CEL list (true where a rule
    # has none): one evaluation instead of one per rule, about half the cost for five rules.
    conditions_by_type: dict[str, Compiled] = field(default_factory=dict)
    # Per event type, the badges an event of it may award, in ``badges`` order: those with a
    # leaf on the type, and those re-checked when points or other badges move (for any other
    # type: ``badges_on_change``). An event then looks at a few badges, not at every one.
    badges_by_type: dict[str, list[CompiledBadge]] = field(default_factory=dict)
    badges_on_change: list[CompiledBadge] = field(default_factory=list)

    @property
    def event_types(self) -> set[str]:
        return set(self.points_by_type) | set(self.leaves_by_type) | set(self.boards_by_type)


class _Compiler:
    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def expression(self, owner: str, path: str, source: str) -> Compiled | None:
        try:
            return compile_expression(source)
        except CompileError as exc:
            where = f" (line {exc.line}, column {exc.column} of the expression)" if exc.line else ""
            self.problems.append(Problem(owner, path, f"{exc.message}{where}"))
            return None

    def matcher(self, owner: str, path: str, matcher: Matcher) -> CompiledMatcher:
        when = self.expression(owner, f"{path}.when", matcher.when) if matcher.when else None
        return CompiledMatcher(matcher.event_types, when)


def compile_ruleset(doc: RuleSet) -> CompiledRuleSet:
    """Compile every expression and check references; raise RuleSetInvalid listing all problems."""
    c = _Compiler()
    try:
        zone = zoneinfo.ZoneInfo(doc.program.time_zone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        c.problems.append(
            Problem("", "program.time_zone", f"unknown time zone {doc.program.time_zone!r}")
        )
        zone = zoneinfo.ZoneInfo("UTC")
    currencies = set(doc.currencies)
    _check_unique(c, [r.id for r in doc.rules], "rules")
    _check_unique(c, [b.id for b in doc.badges], "badges")

    points_by_type: dict[str, list[CompiledPointsRule]] = defaultdict(list)
    for i, rule in enumerate(doc.rules):
        compiled_rule = _points_rule(c, f"rules[{i}]", rule, currencies)
        for event_type in compiled_rule.matcher.event_types:
            points_by_type[event_type].append(compiled_rule)

    if doc.levels is not None and doc.levels.currency not in currencies:
        c.problems.append(
            Problem("", "levels.currency", _unknown_currency(doc.levels.currency, currencies))
        )

    compiled_badges: dict[str, CompiledBadge] = {}
    for i, badge in enumerate(doc.badges):
        leaves: list[MeasuredCriterion] = []
        _leaves(c, badge.id, f"badges[{i}].criteria", badge.criteria, badge.id, leaves, currencies)
        compiled_badges[badge.id] = CompiledBadge(
            badge,
            leaves,
            {leaf.key: leaf for leaf in leaves},
            uses_points=uses(badge.criteria, Points),
            uses_badges=uses(badge.criteria, HasBadge),
        )
    order = _dependency_order(c, doc.badges)
    _check_unique(c, [b.id for b in doc.leaderboards], "leaderboards")
    boards = [
        _board(c, f"leaderboards[{i}]", board, currencies, zone, doc.program.week_start)
        for i, board in enumerate(doc.leaderboards)
    ]

    if c.problems:
        raise RuleSetInvalid(c.problems)
    ordered = [compiled_badges[b] for b in order]
    leaves_by_type: dict[str, list[tuple[CompiledBadge, MeasuredCriterion]]] = defaultdict(list)
    for compiled_badge in ordered:
        for leaf in compiled_badge.leaves:
            if leaf.matcher is not None:
                for event_type in leaf.matcher.event_types:
                    leaves_by_type[event_type].append((compiled_badge, leaf))
    boards_by_type, boards_by_currency = _index_boards(boards)
    on_change = [b for b in ordered if b.uses_points or b.uses_badges]
    badges_by_type = {}
    for event_type, pairs in leaves_by_type.items():
        measured = {id(badge) for badge, _ in pairs}
        badges_by_type[event_type] = [
            b for b in ordered if id(b) in measured or b.uses_points or b.uses_badges
        ]
    return CompiledRuleSet(
        doc=doc,
        zone=zone,
        points_by_type=dict(points_by_type),
        badges=ordered,
        leaves_by_type=dict(leaves_by_type),
        badge_index={b.badge.id: b for b in ordered},
        boards={b.board.id: b for b in boards},
        boards_by_type=boards_by_type,
        boards_by_currency=boards_by_currency,
        conditions_by_type=_combined_conditions(points_by_type),
        badges_by_type=badges_by_type,
        badges_on_change=on_change,
    )


def _combined_conditions(by_type: dict[str, list[CompiledPointsRule]]) -> dict[str, Compiled]:
    combined = {}
    for event_type, compiled_rules in by_type.items():
        conditions = [r.matcher.when for r in compiled_rules]
        if sum(c is not None for c in conditions) < 2:
            continue
        source = ", ".join(f"({c.source})" if c else "true" for c in conditions)
        try:
            combined[event_type] = compile_expression(f"[{source}]")
        except CompileError:
            continue  # each rule's own condition compiled: evaluate them one by one
    return combined


def _index_boards(
    boards: list[CompiledBoard],
) -> tuple[dict[str, list[CompiledBoard]], dict[str, list[CompiledBoard]]]:
    """Boards by the event type they count, and by the currency they rank."""
    by_type: dict[str, list[CompiledBoard]] = defaultdict(list)
    by_currency: dict[str, list[CompiledBoard]] = defaultdict(list)
    for board in boards:
        if board.matcher is not None:
            for event_type in board.matcher.event_types:
                by_type[event_type].append(board)
        elif board.board.metric.currency is not None:
            by_currency[board.board.metric.currency].append(board)
    return dict(by_type), dict(by_currency)


def _board(
    c: _Compiler,
    path: str,
    board: Leaderboard,
    currencies: set[str],
    program_zone: zoneinfo.ZoneInfo,
    program_week_start: str,
) -> CompiledBoard:
    metric = board.metric
    matcher = value = None
    if metric.currency is not None and metric.currency not in currencies:
        c.problems.append(
            Problem(
                board.id, f"{path}.metric.currency", _unknown_currency(metric.currency, currencies)
            )
        )
    if metric.count is not None:
        matcher = c.matcher(board.id, f"{path}.metric.count", metric.count)
    if metric.sum is not None:
        matcher = c.matcher(board.id, f"{path}.metric.sum", metric.sum)
        value = c.expression(board.id, f"{path}.metric.sum.property", metric.sum.property)
    where = c.expression(board.id, f"{path}.where", board.where) if board.where else None
    zone = program_zone
    if board.time_zone is not None:
        try:
            zone = zoneinfo.ZoneInfo(board.time_zone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            c.problems.append(
                Problem(board.id, f"{path}.time_zone", f"unknown time zone {board.time_zone!r}")
            )
    return CompiledBoard(board, matcher, value, where, zone, board.week_start or program_week_start)


def _points_rule(
    c: _Compiler, path: str, rule: PointsRule, currencies: set[str]
) -> CompiledPointsRule:
    amounts: dict[str, float | Compiled] = {}
    for currency, amount in rule.award.items():
        where = f"{path}.award.{currency}"
        if currency not in currencies:
            c.problems.append(Problem(rule.id, where, _unknown_currency(currency, currencies)))
        if isinstance(amount, str):
            compiled = c.expression(rule.id, where, amount)
            if compiled is not None:
                amounts[currency] = compiled
        elif not math.isfinite(amount):
            c.problems.append(
                Problem(rule.id, where, f"the amount is {amount}, not a finite number")
            )
        else:
            if amount < 0 and not rule.allow_negative:
                c.problems.append(Problem(rule.id, where, "negative amount (set allow_negative)"))
            # As evaluation rounds an expression's amount: a constant is then used as is.
            amounts[currency] = round(float(amount), DECIMALS)
    if rule.cap is not None:
        for currency in rule.cap.max:
            if currency not in rule.award:
                c.problems.append(
                    Problem(
                        rule.id,
                        f"{path}.cap.max.{currency}",
                        "caps a currency the rule does not award",
                    )
                )
    once = c.expression(rule.id, f"{path}.once_per", rule.once_per) if rule.once_per else None
    return CompiledPointsRule(rule, c.matcher(rule.id, path, rule), amounts, once)


def _unknown_currency(currency: str, currencies: set[str]) -> str:
    return f"unknown currency {currency!r} (declared: {', '.join(sorted(currencies))})"


def _check_unique(c: _Compiler, ids: list[str], where: str) -> None:
    seen: set[str] = set()
    for i, ident in enumerate(ids):
        if ident in seen:
            c.problems.append(Problem(ident, f"{where}[{i}].id", f"duplicate id {ident!r}"))
        seen.add(ident)


def _leaves(
    c: _Compiler,
    owner: str,
    path: str,
    criterion: Criterion,
    key: str,
    out: list[MeasuredCriterion],
    currencies: set[str],
) -> None:
    if isinstance(criterion, All | Any_):
        children = criterion.all if isinstance(criterion, All) else criterion.any
        name = "all" if isinstance(criterion, All) else "any"
        for i, child in enumerate(children):
            _leaves(c, owner, f"{path}.{name}[{i}]", child, f"{key}/{i}", out, currencies)
        return
    if isinstance(criterion, HasBadge):
        return
    if isinstance(criterion, Points):
        if criterion.points.currency not in currencies:
            c.problems.append(
                Problem(
                    owner,
                    f"{path}.points.currency",
                    _unknown_currency(criterion.points.currency, currencies),
                )
            )
        out.append(MeasuredCriterion(key, criterion, None, None))
        return
    spec: Matcher
    value = None
    if isinstance(criterion, Count):
        spec = criterion.count
    elif isinstance(criterion, Sum | Distinct):
        spec = criterion.sum if isinstance(criterion, Sum) else criterion.distinct
        kind = "sum" if isinstance(criterion, Sum) else "distinct"
        value = c.expression(owner, f"{path}.{kind}.property", spec.property)
    elif isinstance(criterion, Streak):
        spec = criterion.streak
    else:
        assert isinstance(criterion, First)
        spec = criterion.first
    out.append(MeasuredCriterion(key, criterion, c.matcher(owner, path, spec), value))


def uses(criterion: Criterion, kind: type) -> bool:
    """Whether a criterion is, or combines, a criterion of ``kind``."""
    if isinstance(criterion, kind):
        return True
    if isinstance(criterion, All):
        return any(uses(c, kind) for c in criterion.all)
    if isinstance(criterion, Any_):
        return any(uses(c, kind) for c in criterion.any)
    return False


def _references(criterion: Criterion) -> list[str]:
    if isinstance(criterion, HasBadge):
        return [criterion.badge]
    if isinstance(criterion, All | Any_):
        children = criterion.all if isinstance(criterion, All) else criterion.any
        return [ref for child in children for ref in _references(child)]
    return []


def _dependency_order(c: _Compiler, badges: list[Badge]) -> list[str]:
    """Badges after the badges their criteria name; unknown names and cycles are problems."""
    known = {b.id for b in badges}
    deps = {b.id: _references(b.criteria) for b in badges}
    for i, badge in enumerate(badges):
        for ref in deps[badge.id]:
            if ref not in known:
                c.problems.append(
                    Problem(badge.id, f"badges[{i}].criteria", f"unknown badge {ref!r}")
                )
    order: list[str] = []
    state: dict[str, int] = {}  # 1 visiting, 2 done

    def visit(ident: str, trail: list[str]) -> None:
        if state.get(ident) == 2:
            return
        if state.get(ident) == 1:
            cycle = " -> ".join([*trail[trail.index(ident) :], ident])
            c.problems.append(Problem(ident, "criteria", f"badges depend on each other: {cycle}"))
            return
        state[ident] = 1
        for ref in deps.get(ident, []):
            if ref in known:
                visit(ref, [*trail, ident])
        state[ident] = 2
        order.append(ident)

    for badge in badges:
        visit(badge.id, [])
    return order
