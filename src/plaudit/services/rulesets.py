"""Rule sets: drafts, validation, immutable published versions, diff and roll back."""

from __future__ import annotations

import difflib
import threading
from dataclasses import dataclass

from plaudit.domain.clock import Clock
from plaudit.domain.ids import new_id
from plaudit.errors import FieldError, InvalidInput, NotFound
from plaudit.rules.compiler import CompiledRuleSet
from plaudit.rules.document import DocumentInvalid, LocatedProblem, load
from plaudit.services import audit
from plaudit.store.ports import (
    Database,
    LiveRuleSet,
    RuleSetRecord,
    RuleSetVersion,
    UnitOfWork,
)

MAX_SOURCE = 512 * 1024


@dataclass(frozen=True, slots=True)
class Validation:
    valid: bool
    problems: list[LocatedProblem]
    warnings: list[str]


@dataclass(frozen=True, slots=True)
class RuleSetView:
    record: RuleSetRecord
    versions: list[RuleSetVersion]
    live: LiveRuleSet | None


@dataclass(frozen=True, slots=True)
class Diff:
    from_version: int
    to_version: int
    added: list[str]
    removed: list[str]
    changed: list[str]
    text: str


class RuleBook:
    """Compiled rule-set versions, compiled once each (versions never change)."""

    def __init__(self) -> None:
        self._compiled: dict[tuple[str, int], CompiledRuleSet] = {}
        # Published versions by tenant, rule set and number, read once: scoring asks for one
        # at every step (a read of the row and its whole source, ~0.5 ms of a step's CPU).
        self._versions: dict[tuple[str, str, int], tuple[RuleSetVersion, CompiledRuleSet]] = {}
        self._lock = threading.Lock()

    def get(self, version: RuleSetVersion) -> CompiledRuleSet:
        key = (version.ruleset_id, version.version)
        with self._lock:
            found = self._compiled.get(key)
        if found is None:
            _, found = load(version.source)
            with self._lock:
                self._compiled[key] = found
        return found

    def version(
        self, uow: UnitOfWork, tenant_id: str, ruleset_id: str, number: int
    ) -> tuple[RuleSetVersion, CompiledRuleSet] | None:
        """A published version and its compiled rules (None: the tenant has no such one)."""
        key = (tenant_id, ruleset_id, number)
        # Unlocked: one dict read is atomic, and scoring asks once an event (0.15 µs against
        # 0.41 with the lock).
        found = self._versions.get(key)
        if found is None:
            record = uow.rulesets.version(tenant_id, ruleset_id, number)
            if record is None:
                return None
            found = (record, self.get(record))
            with self._lock:
                self._versions[key] = found
        return found

    def epochs(self, uow: UnitOfWork, tenant_id: str) -> Epochs:
        return Epochs(self, uow, tenant_id, uow.rulesets.epochs(tenant_id))

    def live(
        self, uow: UnitOfWork, tenant_id: str
    ) -> tuple[RuleSetVersion, CompiledRuleSet] | None:
        live = uow.rulesets.live(tenant_id)
        if live is None:
            return None
        found = self.version(uow, tenant_id, live.ruleset_id, live.version)
        assert found is not None
        return found


class Epochs:
    """Which version scores an event: the one made live last before the event's position."""

    def __init__(
        self, book: RuleBook, uow: UnitOfWork, tenant_id: str, epochs: list[tuple[int, str, int]]
    ) -> None:
        self.book = book
        self.uow = uow
        self.tenant_id = tenant_id
        self.epochs = epochs

    def for_position(self, position: int) -> tuple[RuleSetVersion, CompiledRuleSet] | None:
        chosen = None
        for from_position, ruleset_id, version in self.epochs:
            if from_position < position:
                chosen = (ruleset_id, version)
            else:
                break
        if chosen is None:
            return None
        found = self.book.version(self.uow, self.tenant_id, *chosen)
        assert found is not None
        return found


def invalid_ruleset(problems: list[LocatedProblem]) -> InvalidInput:
    return InvalidInput(
        f"the rule set is invalid: {len(problems)} problem(s)",
        [
            FieldError(
                p.field,
                f"{p.rule + ': ' if p.rule else ''}{p.message}"
                + (f" (line {p.line})" if p.line else ""),
            )
            for p in problems
        ],
    )


class RuleSetService:
    def __init__(self, db: Database, clock: Clock, book: RuleBook) -> None:
        self.db = db
        self.clock = clock
        self.book = book

    def create(self, tenant_id: str, name: str, source: str) -> RuleSetView:
        _check_size(source)
        now = self.clock()
        record = RuleSetRecord(new_id("rs"), tenant_id, name, source, now, now)
        with self.db.write() as uow:
            uow.rulesets.add(record)
            audit.record(
                uow,
                tenant_id,
                "ruleset.create",
                ("ruleset", record.id),
                now,
                after={"name": name, "draft": source},
            )
            uow.commit()
        return RuleSetView(record, [], None)

    def all_of(self, tenant_id: str) -> list[RuleSetView]:
        with self.db.read() as uow:
            live = uow.rulesets.live(tenant_id)
            return [
                RuleSetView(r, uow.rulesets.versions(tenant_id, r.id), live)
                for r in uow.rulesets.all_of(tenant_id)
            ]

    def get(self, tenant_id: str, ruleset_id: str) -> RuleSetView:
        with self.db.read() as uow:
            record = self._record(uow, tenant_id, ruleset_id)
            return RuleSetView(
                record, uow.rulesets.versions(tenant_id, ruleset_id), uow.rulesets.live(tenant_id)
            )

    def save_draft(self, tenant_id: str, ruleset_id: str, source: str) -> RuleSetView:
        _check_size(source)
        with self.db.write() as uow:
            old = self._record(uow, tenant_id, ruleset_id)
            now = self.clock()
            uow.rulesets.save_draft(tenant_id, ruleset_id, source, now)
            audit.record(
                uow,
                tenant_id,
                "ruleset.draft",
                ("ruleset", ruleset_id),
                now,
                before={"draft": old.draft},
                after={"draft": source},
            )
            uow.commit()
        return self.get(tenant_id, ruleset_id)

    def validate_source(self, tenant_id: str, source: str) -> Validation:
        """Problems (which block publishing) and warnings (which do not)."""
        try:
            _, compiled = load(source)
        except DocumentInvalid as exc:
            return Validation(False, exc.problems, [])
        with self.db.read() as uow:
            seen = uow.events.types(tenant_id)
        warnings = (
            [
                f"no event of type {t!r} has been received yet (a typo?)"
                for t in sorted(compiled.event_types - seen)
            ]
            if seen
            else []
        )
        return Validation(True, [], warnings)

    def validate(self, tenant_id: str, ruleset_id: str) -> Validation:
        with self.db.read() as uow:
            record = self._record(uow, tenant_id, ruleset_id)
        return self.validate_source(tenant_id, record.draft)

    def publish(self, tenant_id: str, ruleset_id: str, by: str, note: str = "") -> RuleSetVersion:
        """Freeze the draft as the next version and make it the tenant's live rule set."""
        with self.db.read() as uow:
            draft = self._record(uow, tenant_id, ruleset_id).draft
        return self._publish_source(tenant_id, ruleset_id, draft, by, note)

    def rollback(self, tenant_id: str, ruleset_id: str, version: int, by: str) -> RuleSetVersion:
        """Publish an older version again, as a new version (history stays append-only)."""
        with self.db.read() as uow:
            old = uow.rulesets.version(tenant_id, ruleset_id, version)
        if old is None:
            raise NotFound(f"rule set {ruleset_id!r} has no version {version}")
        return self._publish_source(
            tenant_id, ruleset_id, old.source, by, f"rollback to version {version}"
        )

    def _publish_source(
        self, tenant_id: str, ruleset_id: str, source: str, by: str, note: str
    ) -> RuleSetVersion:
        try:
            load(source)
        except DocumentInvalid as exc:
            raise invalid_ruleset(exc.problems) from None
        now = self.clock()
        with self.db.write() as uow:
            self._record(uow, tenant_id, ruleset_id)
            versions = uow.rulesets.versions(tenant_id, ruleset_id)
            number = versions[-1].version + 1 if versions else 1
            version = RuleSetVersion(ruleset_id, number, source, now, by, note[:500])
            uow.rulesets.add_version(tenant_id, version)
            live = uow.rulesets.live(tenant_id)
            audit.record(
                uow,
                tenant_id,
                "ruleset.publish",
                ("ruleset", ruleset_id),
                now,
                before={"live": f"{live.ruleset_id}@{live.version}"} if live else None,
                after={"live": f"{ruleset_id}@{number}", "note": version.note, "source": source},
            )
            uow.rulesets.set_live(
                tenant_id, LiveRuleSet(ruleset_id, number, now), uow.events.last_position()
            )
            uow.commit()
        return version

    def version(self, tenant_id: str, ruleset_id: str, number: int) -> RuleSetVersion:
        with self.db.read() as uow:
            self._record(uow, tenant_id, ruleset_id)
            found = uow.rulesets.version(tenant_id, ruleset_id, number)
        if found is None:
            raise NotFound(f"rule set {ruleset_id!r} has no version {number}")
        return found

    def diff(self, tenant_id: str, ruleset_id: str, a: int, b: int) -> Diff:
        old, new = self.version(tenant_id, ruleset_id, a), self.version(tenant_id, ruleset_id, b)
        old_doc, _ = load(old.source)
        new_doc, _ = load(new.source)

        def items(doc: object) -> dict[str, str]:
            found = {}
            for kind in ("rules", "badges"):
                for item in getattr(doc, kind):
                    found[f"{kind[:-1]}:{item.id}"] = item.model_dump_json()
            levels = getattr(doc, "levels", None)
            if levels is not None:
                found["levels"] = levels.model_dump_json()
            return found

        before, after = items(old_doc), items(new_doc)
        text = "".join(
            difflib.unified_diff(
                old.source.splitlines(keepends=True),
                new.source.splitlines(keepends=True),
                fromfile=f"version {a}",
                tofile=f"version {b}",
            )
        )
        return Diff(
            a,
            b,
            added=sorted(after.keys() - before.keys()),
            removed=sorted(before.keys() - after.keys()),
            changed=sorted(k for k in before.keys() & after.keys() if before[k] != after[k]),
            text=text,
        )

    @staticmethod
    def _record(uow: UnitOfWork, tenant_id: str, ruleset_id: str) -> RuleSetRecord:
        record = uow.rulesets.get(tenant_id, ruleset_id)
        if record is None:
            raise NotFound(f"no rule set {ruleset_id!r}")
        return record


def _check_size(source: str) -> None:
    if len(source) > MAX_SOURCE:
        raise InvalidInput(
            "rule set too large", [FieldError("source", f"at most {MAX_SOURCE} characters")]
        )
    if not source.strip():
        raise InvalidInput("empty rule set", [FieldError("source", "write the rule set here")])
