"""The rule-set document (YAML or JSON). Its JSON Schema is published from these models."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    StringConstraints,
    Tag,
    model_validator,
)

Ident = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")]
Currency = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,31}$")]
EventType = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.:/-]{0,127}$")]
Expression = Annotated[str, StringConstraints(min_length=1, max_length=2000)]
Period = Literal["day", "week", "month", "quarter", "year"]


class Doc(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Program(Doc):
    time_zone: str = Field(default="UTC", description="Used when a player has no time zone.")
    week_start: Literal["monday", "sunday"] = "monday"


class Matcher(Doc):
    """Which events count: their type, and a CEL condition over ``event`` and ``player``."""

    on: EventType | list[EventType]
    when: Expression | None = None

    @property
    def event_types(self) -> tuple[str, ...]:
        return (self.on,) if isinstance(self.on, str) else tuple(self.on)


class Window(Doc):
    """Either the last ``rolling`` duration (in whole days) or the current calendar ``period``."""

    rolling: timedelta | None = None
    period: Period | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Window:
        if (self.rolling is None) == (self.period is None):
            raise ValueError("give exactly one of rolling (e.g. P30D) or period (e.g. quarter)")
        if self.rolling is not None and (
            self.rolling < timedelta(days=1) or self.rolling % timedelta(days=1)
        ):
            raise ValueError("rolling windows are whole days, at least P1D")
        return self


class Cap(Doc):
    per: Literal["day", "week", "month"]
    max: dict[Currency, Annotated[float, Field(gt=0)]]


class PointsRule(Matcher):
    id: Ident
    description: str | None = None
    award: dict[Currency, float | Expression] = Field(min_length=1)
    cap: Cap | None = None
    once_per: Expression | None = Field(
        default=None, description="CEL naming the object; the rule pays once per player and object."
    )
    allow_negative: bool = False


class Level(Doc):
    name: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    at: Annotated[float, Field(ge=0)]


class Levels(Doc):
    currency: Currency
    thresholds: list[Level] = Field(min_length=1)

    @model_validator(mode="after")
    def _ascending(self) -> Levels:
        ats = [level.at for level in self.thresholds]
        if ats != sorted(set(ats)) or len(set(ats)) != len(ats):
            raise ValueError("level thresholds must be strictly ascending")
        return self


class Measured(Matcher):
    at_least: Annotated[float, Field(gt=0)] | None = None
    window: Window | None = None


class CountSpec(Measured):
    pass


class ValueSpec(Measured):
    property: Expression = Field(description="CEL giving the value, e.g. event.properties.amount")


class StreakSpec(Matcher):
    unit: Literal["day", "week"] = "day"
    length: Annotated[int, Field(ge=2)] | None = None
    freezes: Annotated[int, Field(ge=0, le=30)] = 0


class PointsSpec(Doc):
    currency: Currency
    at_least: Annotated[float, Field(gt=0)] | None = None


class Count(Doc):
    count: CountSpec


class Sum(Doc):
    sum: ValueSpec


class Distinct(Doc):
    distinct: ValueSpec


class Streak(Doc):
    streak: StreakSpec


class First(Doc):
    first: Matcher


class Points(Doc):
    points: PointsSpec


class HasBadge(Doc):
    badge: Ident


class All(Doc):
    all: list[Criterion] = Field(min_length=1)


class Any_(Doc):  # noqa: N801 - "any" is the document's word
    any: list[Criterion] = Field(min_length=1)


CRITERION_KINDS = ("count", "sum", "distinct", "streak", "first", "points", "badge", "all", "any")


def _criterion_kind(value: object) -> str | None:
    """The one key of a criterion names its kind (``{count: {...}}``)."""
    if isinstance(value, dict):
        kinds = [k for k in value if k in CRITERION_KINDS]
        return kinds[0] if len(kinds) == 1 else None
    if isinstance(value, BaseModel):
        return next((k for k in CRITERION_KINDS if k in type(value).model_fields), None)
    return None


Criterion = Annotated[
    Annotated[Count, Tag("count")]
    | Annotated[Sum, Tag("sum")]
    | Annotated[Distinct, Tag("distinct")]
    | Annotated[Streak, Tag("streak")]
    | Annotated[First, Tag("first")]
    | Annotated[Points, Tag("points")]
    | Annotated[HasBadge, Tag("badge")]
    | Annotated[All, Tag("all")]
    | Annotated[Any_, Tag("any")],
    Discriminator(
        _criterion_kind,
        custom_error_type="criterion_kind",
        custom_error_message=f"a criterion has exactly one of: {', '.join(CRITERION_KINDS)}",
    ),
]


class Tier(Doc):
    name: Annotated[str, StringConstraints(min_length=1, max_length=50)]
    at_least: Annotated[float, Field(gt=0)]


class Badge(Doc):
    id: Ident
    name: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    description: str = ""
    image: str | None = None
    narrative: str = Field(default="", description="How to earn it, in words.")
    tags: list[str] = []
    alignment: list[dict[str, str]] = Field(
        default=[], description="Skills or competencies: {targetName, targetUrl, targetFramework}"
    )
    criteria: Criterion
    tiers: list[Tier] | None = Field(
        default=None, description="Thresholds of the criterion's measure, lowest first."
    )
    repeatable: bool = False
    expires_after: timedelta | None = None

    @model_validator(mode="after")
    def _thresholds(self) -> Badge:
        spec = measure_of(self.criteria)
        if self.tiers is not None:
            if spec is None:
                raise ValueError("tiers need a count, sum, distinct, streak or points criterion")
            levels = [t.at_least for t in self.tiers]
            if levels != sorted(set(levels)):
                raise ValueError("tier thresholds must be strictly ascending")
            if len({t.name for t in self.tiers}) != len(self.tiers):
                raise ValueError("tier names must differ")
        if self.repeatable:
            if self.tiers is not None:
                raise ValueError("a badge is tiered or repeatable, not both")
            if not isinstance(self.criteria, Count | Sum | Distinct):
                raise ValueError("repeatable badges need a count, sum or distinct criterion")
            if self.criteria_window_is_rolling():
                raise ValueError("repeatable badges cannot use a rolling window")
        return self

    def criteria_window_is_rolling(self) -> bool:
        spec = measure_of(self.criteria)
        window = getattr(spec, "window", None)
        return window is not None and window.rolling is not None


def measure_of(criterion: Criterion) -> CountSpec | ValueSpec | StreakSpec | PointsSpec | None:
    if isinstance(criterion, Count):
        return criterion.count
    if isinstance(criterion, Sum):
        return criterion.sum
    if isinstance(criterion, Distinct):
        return criterion.distinct
    if isinstance(criterion, Streak):
        return criterion.streak
    if isinstance(criterion, Points):
        return criterion.points
    return None


class BoardValue(Matcher):
    property: Expression = Field(description="CEL giving the value, e.g. event.properties.amount")


class BoardMetric(Doc):
    """What a board ranks by: a currency's points (after caps), or a count or sum of events."""

    currency: Currency | None = None
    count: Matcher | None = None
    sum: BoardValue | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> BoardMetric:
        given = [k for k in ("currency", "count", "sum") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of currency, count or sum")
        return self


class Season(Doc):
    start: AwareDatetime
    end: AwareDatetime

    @model_validator(mode="after")
    def _ordered(self) -> Season:
        if self.end <= self.start:
            raise ValueError("a season ends after it starts")
        return self


BoardWindow = Literal["all_time", "day", "week", "month", "quarter", "season"]


class Leaderboard(Doc):
    id: Ident
    name: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    description: str = ""
    metric: BoardMetric
    window: BoardWindow = "all_time"
    season: Season | None = Field(default=None, description="Required when window is season.")
    time_zone: str | None = Field(
        default=None, description="Where windows start and end; the program's by default."
    )
    week_start: Literal["monday", "sunday"] | None = None
    group_by: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,64}$")] | None = Field(
        default=None,
        description="Rank groups by this player attribute (team, department, region) instead "
        "of players; a player counts for the group they are in when the event happens.",
    )
    where: Expression | None = Field(
        default=None, description="CEL over player (its attributes): who takes part."
    )
    min_score: float | None = Field(
        default=None, description="Listed and ranked only from this score on."
    )
    late_grace: timedelta = Field(
        default=timedelta(days=1),
        description="How long after a window closes an event that happened in it still counts "
        "there (judged by when Plaudit received it).",
    )

    @model_validator(mode="after")
    def _season(self) -> Leaderboard:
        if (self.window == "season") != (self.season is not None):
            raise ValueError("a season (start, end) is given exactly when window is season")
        if self.late_grace < timedelta(0):
            raise ValueError("late_grace cannot be negative")
        return self


class Holds(Doc):
    """Anti-cheat: when a player's activity looks abnormal, their events are held for an
    admin's review instead of being scored (released, they are scored in order; rejected,
    they are retracted)."""

    events_per_day: Annotated[int, Field(ge=1)] | None = Field(
        default=None,
        description="More events than this from one player in one day (the program's time "
        "zone, by occurred_at) holds that player's events from the next one on.",
    )
    median_multiple: Annotated[float, Field(gt=1)] | None = Field(
        default=None,
        description="Also hold a player whose events in a day exceed this many times the "
        "median of the previous day's active players (frozen when first needed, so replays "
        "agree), but never below min_events.",
    )
    min_events: Annotated[int, Field(ge=1)] = Field(
        default=50, description="The least a day's limit from the median can be."
    )
    rule_awards_per_day: Annotated[int, Field(ge=1)] | None = Field(
        default=None,
        description="A player to whom one rule awards points more often than this in a day "
        "is held from their next event on.",
    )


class RuleSet(Doc):
    """A whole program: currencies, points rules, levels, badges and leaderboards."""

    program: Program = Program()
    currencies: list[Currency] = Field(default=["xp"], min_length=1)
    rules: list[PointsRule] = []
    levels: Levels | None = None
    badges: list[Badge] = []
    leaderboards: list[Leaderboard] = []
    holds: Holds | None = None


def json_schema() -> dict[str, object]:
    schema = RuleSet.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "Plaudit rule set"
    return schema


for _model in (All, Any_, Badge, RuleSet):
    _model.model_rebuild()
