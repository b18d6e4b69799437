"""The demo program: a small company whose LMS, CRM and HRIS send Plaudit their events.

Deterministic for a seed, so a demo run can be reproduced. Each person has an LMS login
(an email) and a CRM user id; the HRIS knows both, which is how the demo links them.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from plaudit.domain.events import IncomingEvent

FIRST_NAMES = (
    "Ada",
    "Grace",
    "Alan",
    "Edsger",
    "Barbara",
    "Donald",
    "Frances",
    "Ken",
    "Margaret",
    "Dennis",
    "Radia",
    "Tim",
    "Shafi",
    "Leslie",
    "Katherine",
    "Niklaus",
    "Sophie",
    "Vint",
    "Hedy",
    "John",
    "Annie",
    "Linus",
    "Karen",
    "Guido",
)
TEAMS = (("Sales", "North"), ("Sales", "South"), ("Learning", "North"), ("Support", "South"))
TIME_ZONES = ("Europe/Paris", "America/New_York", "Asia/Tokyo", "Europe/London")
COURSES = ("onboarding", "security-101", "negotiation", "product-deep-dive", "gdpr")


@dataclass(frozen=True, slots=True)
class DemoPerson:
    name: str
    email: str
    crm_id: str
    team: str
    region: str
    time_zone: str
    seller: bool


def people(count: int = 24) -> list[DemoPerson]:
    out = []
    for i in range(count):
        name = FIRST_NAMES[i % len(FIRST_NAMES)]
        team, region = TEAMS[i % len(TEAMS)]
        out.append(
            DemoPerson(
                name=f"{name} {chr(65 + i // len(FIRST_NAMES))}.",
                email=f"{name.lower()}{i}@example.com",
                crm_id=f"crm-{1000 + i}",
                team=team,
                region=region,
                time_zone=TIME_ZONES[i % len(TIME_ZONES)],
                seller=team == "Sales",
            )
        )
    return out


@dataclass
class DemoStream:
    """Synthetic LMS and CRM events, with sequence numbers per source.

    ``drop_rate`` skips a sequence number now and then (a message lost on the way: the
    sources API shows the gap); ``repeat_rate`` sends an event twice (Plaudit dedupes it).
    """

    seed: int = 7
    # Sequence numbers continue from here per source (a restarted demo must not reuse them).
    start_after: dict[str, int] = field(default_factory=dict)
    drop_rate: float = 0.01
    repeat_rate: float = 0.05
    team: list[DemoPerson] = field(default_factory=people)
    _rng: random.Random = field(init=False)
    _sequence: dict[str, int] = field(init=False)
    _counter: int = field(init=False, default=0)
    _last: IncomingEvent | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._sequence = {"lms": 0, "crm": 0} | self.start_after

    def _next_sequence(self, source: str) -> int:
        self._sequence[source] += 1
        if self._rng.random() < self.drop_rate:
            self._sequence[source] += 1
        return self._sequence[source]

    def events(self, now: datetime) -> Iterator[IncomingEvent]:
        """An endless stream; each event's occurred_at is a little before ``now``."""
        while True:
            if self._last is not None and self._rng.random() < self.repeat_rate:
                yield self._last
                continue
            self._counter += 1
            person = self._rng.choice(self.team)
            occurred = now - timedelta(seconds=self._rng.randint(0, 120))
            if person.seller and self._rng.random() < 0.5:
                event = self._crm_event(person, occurred)
            else:
                event = self._lms_event(person, occurred)
            self._last = event
            yield event

    def _lms_event(self, person: DemoPerson, occurred: datetime) -> IncomingEvent:
        course = self._rng.choice(COURSES)
        roll = self._rng.random()
        if roll < 0.6:
            kind, props = (
                "lesson.completed",
                {
                    "course": course,
                    "lesson": self._rng.randint(1, 12),
                    "duration_s": self._rng.randint(120, 1800),
                },
            )
        elif roll < 0.9:
            kind, props = "quiz.passed", {"course": course, "score": self._rng.randint(60, 100)}
        else:
            kind, props = "course.completed", {"course": course}
        return IncomingEvent(
            key=f"lms-{self.seed}-{self._counter}",
            source="lms",
            type=kind,
            actor=person.email,
            occurred_at=occurred,
            properties=props,
            sequence=self._next_sequence("lms"),
        )

    def _crm_event(self, person: DemoPerson, occurred: datetime) -> IncomingEvent:
        roll = self._rng.random()
        if roll < 0.2:
            kind, props = (
                "deal.closed",
                {
                    "amount": self._rng.randrange(1_000, 50_000, 250),
                    "currency": "EUR",
                },
            )
        elif roll < 0.6:
            kind, props = "call.logged", {"duration_s": self._rng.randint(60, 3600)}
        else:
            kind, props = "meeting.booked", {"with": "prospect"}
        return IncomingEvent(
            key=f"crm-{self.seed}-{self._counter}",
            source="crm",
            type=kind,
            actor=person.crm_id,
            occurred_at=occurred,
            properties=props,
            sequence=self._next_sequence("crm"),
        )


def as_json(event: IncomingEvent) -> dict[str, object]:
    """The event as POST /v1/events expects it."""
    body: dict[str, object] = {
        "id": event.key,
        "source": event.source,
        "type": event.type,
        "actor": event.actor,
        "occurred_at": event.occurred_at.isoformat(),
        "properties": dict(event.properties),
    }
    if event.sequence is not None:
        body["sequence"] = event.sequence
    return body
