"""Store ports. Services depend on these; adapters (``store.sql``) implement them."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple, Protocol

from plaudit.domain.auth import Scope
from plaudit.domain.events import StoredEvent
from plaudit.domain.players import Identity, Player
from plaudit.domain.sequences import Run


@dataclass(frozen=True, slots=True)
class Tenant:
    id: str
    name: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class ApiKeyRecord:
    id: str
    tenant_id: str
    name: str
    display_prefix: str
    scopes: frozenset[Scope]
    created_at: datetime
    revoked_at: datetime | None


class NewEventRow(NamedTuple):
    """An event ready for the log: identity already resolved to a player."""

    id: str
    source: str
    key: str
    type: str
    player_id: str
    actor: str
    occurred_at: datetime
    properties: Mapping[str, Any]
    sequence: int | None


@dataclass(frozen=True, slots=True)
class EventQuery:
    player_ids: Sequence[str] = ()
    source: str | None = None
    type: str | None = None
    occurred_from: datetime | None = None
    occurred_until: datetime | None = None
    after_position: int = 0
    limit: int = 100


@dataclass(frozen=True, slots=True)
class IdempotencyRecord:
    fingerprint: str
    state: str  # "in_flight" | "done"
    status_code: int | None
    content_type: str | None
    body: bytes | None
    created_at: datetime
    expires_at: datetime


class TenantRepository(Protocol):
    def get(self, tenant_id: str) -> Tenant | None: ...
    def add(self, tenant: Tenant) -> None: ...
    def all(self) -> list[Tenant]: ...


class ApiKeyRepository(Protocol):
    def add(self, record: ApiKeyRecord, key_hash: str) -> None: ...
    def find_by_hash(self, key_hash: str) -> ApiKeyRecord | None: ...
    def get(self, tenant_id: str, key_id: str) -> ApiKeyRecord | None: ...
    def all_of(self, tenant_id: str | None) -> list[ApiKeyRecord]: ...
    def revoke(self, tenant_id: str, key_id: str, at: datetime) -> bool: ...
    def count_active(self, tenant_id: str) -> int: ...


class PlayerRepository(Protocol):
    def get(self, tenant_id: str, player_id: str, lock: bool = False) -> Player | None:
        """``lock``: the player stays locked until the transaction ends (in a write that
        reads the player, then writes it)."""
        ...

    def get_many(self, tenant_id: str, player_ids: Iterable[str]) -> dict[str, Player]: ...
    def generation(self) -> int:
        """The players' write counter, bumped by every update of a player (a merge, the only
        change of an identity's player, updates both players in its transaction)."""
        ...

    def resolve(self, tenant_id: str, wanted: Iterable[Identity]) -> dict[Identity, str]: ...
    def add_many(self, players: Sequence[Player]) -> None: ...
    def add_identities(
        self, tenant_id: str, links: Sequence[tuple[Identity, str]], at: datetime
    ) -> None: ...
    def claim_identities(
        self, tenant_id: str, links: Sequence[tuple[Identity, str]], at: datetime
    ) -> set[Identity]:
        """Link identities not linked yet; the ones linked here."""
        ...

    def drop_new(self, tenant_id: str, player_ids: Sequence[str]) -> None:
        """Delete players this transaction created and nothing refers to yet."""
        ...

    def identities_of(self, tenant_id: str, player_id: str) -> list[Identity]: ...
    def page(
        self, tenant_id: str, after_id: str | None, limit: int, source: str | None = None
    ) -> list[Player]: ...
    def update(self, player: Player) -> None: ...
    def repoint_identities(self, tenant_id: str, from_player: str, to_player: str) -> int: ...
    def record_merge(
        self, tenant_id: str, absorbed_id: str, survivor_id: str, at: datetime
    ) -> None: ...


class EventRepository(Protocol):
    def append(
        self, tenant_id: str, rows: Sequence[NewEventRow], received_at: datetime
    ) -> set[tuple[str, str]]:
        """Insert rows not yet in the log; return (source, key) of those inserted."""
        ...

    def append_many(
        self, tenant_id: str, batches: Sequence[tuple[Sequence[NewEventRow], datetime]]
    ) -> set[tuple[str, str]]:
        """``append`` of several requests' rows (each with its time received), in order, as
        one statement where the store can. No (source, key) may be in two batches."""
        ...

    def existing_ids(
        self, tenant_id: str, keys: Iterable[tuple[str, str]]
    ) -> dict[tuple[str, str], tuple[str, str]]:
        """(source, key) -> (event id, player id) for events already in the log."""
        ...

    def get(self, tenant_id: str, event_id: str) -> StoredEvent | None: ...
    def after(self, position: int, limit: int) -> list[StoredEvent]:
        """The log after ``position``, every tenant, in order (for the workers)."""
        ...

    def after_kept(
        self, position: int, limit: int, end: int | None, keep: Callable[[str, str], bool]
    ) -> tuple[list[StoredEvent], int, int]:
        """Up to ``limit`` events of the log after ``position`` and up to ``end`` (None: to the
        log's end), of which
        those whose (tenant, player) ``keep`` accepts (the others are not decoded); the
        position of the last one read (``position`` when none was); and how many were read."""
        ...

    def types(self, tenant_id: str) -> set[str]: ...
    def last_position(self) -> int: ...
    def in_partition(self, partition: int, position: int, limit: int) -> list[StoredEvent]:
        """A partition's events after ``position``, in log order."""
        ...

    def in_partitions(self, cursors: Mapping[int, int], limit: int) -> list[StoredEvent]:
        """Events of the partitions given (partition -> cursor) after each one's cursor, in
        log order."""
        ...

    def last_positions(self) -> dict[int, int]:
        """Each partition's last position in the log."""
        ...

    def query(self, tenant_id: str, query: EventQuery) -> list[StoredEvent]: ...
    def reassign_player(self, tenant_id: str, from_player: str, to_player: str) -> int: ...
    def index_players(self, limit: int) -> int:
        """Extend the by-player index over the next events of the log; how many."""
        ...

    def sources(self, tenant_id: str) -> list[tuple[str, int]]: ...


class SequenceRepository(Protocol):
    def runs_touching(self, tenant_id: str, source: str, first: int, last: int) -> list[Run]: ...
    def replace_runs(
        self, tenant_id: str, source: str, removed: Sequence[Run], added: Sequence[Run]
    ) -> None: ...
    def all_runs(self, tenant_id: str, source: str) -> list[Run]: ...


class IdempotencyRepository(Protocol):
    def get(self, tenant_id: str, key: str) -> IdempotencyRecord | None: ...
    def claim(
        self, tenant_id: str, key: str, fingerprint: str, now: datetime, expires_at: datetime
    ) -> bool:
        """Insert an in-flight record; False if the key is already taken."""
        ...

    def take_over(
        self,
        tenant_id: str,
        key: str,
        fingerprint: str,
        now: datetime,
        expires_at: datetime,
        stale_before: datetime,
    ) -> bool:
        """Replace an expired record or an in-flight one older than ``stale_before``."""
        ...

    def complete(
        self, tenant_id: str, key: str, status_code: int, content_type: str, body: bytes
    ) -> None: ...
    def release(self, tenant_id: str, key: str) -> None: ...
    def purge_expired(self, now: datetime) -> int: ...


@dataclass(frozen=True, slots=True)
class RuleSetRecord:
    id: str
    tenant_id: str
    name: str
    draft: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class RuleSetVersion:
    ruleset_id: str
    version: int
    source: str
    published_at: datetime
    published_by: str
    note: str


@dataclass(frozen=True, slots=True)
class LiveRuleSet:
    ruleset_id: str
    version: int
    since: datetime


# The rows scoring writes by the thousand are named tuples: a frozen dataclass's __init__
# costs ~2.8 µs for ten fields (a call to object.__setattr__ each), a named tuple's ~0.6.
# Between processes (scoring ahead) they cross as plain tuples (``Produced.__getstate__``).
class LedgerRow(NamedTuple):
    player_id: str
    currency: str
    amount: float
    kind: str  # rule | adjustment
    rule_id: str
    occurred_at: datetime
    ruleset_id: str | None = None
    ruleset_version: int | None = None
    event_id: str | None = None
    reason: str | None = None
    actor: str | None = None


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    id: int
    row: LedgerRow
    recorded_at: datetime


class AwardRow(NamedTuple):
    id: str
    player_id: str
    badge_id: str
    tier: str | None
    occurrence: int
    source: str  # rule | manual
    awarded_at: datetime
    expires_at: datetime | None
    event_id: str | None = None
    ruleset_id: str | None = None
    ruleset_version: int | None = None
    evidence: Mapping[str, Any] | None = None
    awarded_by: str | None = None
    revoked_at: datetime | None = None
    revoked_reason: str | None = None


class LevelUpRow(NamedTuple):
    player_id: str
    currency: str
    level_index: int
    level: str
    event_id: str | None
    reached_at: datetime


class RuleErrorRow(NamedTuple):
    event_id: str
    player_id: str
    rule_id: str
    ruleset_id: str
    ruleset_version: int
    message: str
    at: datetime


@dataclass(frozen=True, slots=True)
class BadgeClass:
    id: str
    name: str
    description: str
    image: str | None
    narrative: str
    tags: list[str]
    alignment: list[dict[str, str]]
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class IssuanceRow:
    award_id: str
    player_id: str
    badge_id: str
    action: str  # issued | revoked
    actor: str
    reason: str
    at: datetime


class BadgeRepository(Protocol):
    def classes(self, tenant_id: str) -> list[BadgeClass]: ...
    def get_class(self, tenant_id: str, badge_id: str) -> BadgeClass | None: ...
    def save_class(self, tenant_id: str, badge: BadgeClass, create: bool = False) -> bool:
        """Update a live class, or (``create``) revive a deleted one or insert it; False
        when there was no live class to update."""
        ...

    def delete_class(self, tenant_id: str, badge_id: str, at: datetime) -> bool: ...
    def get_award(self, tenant_id: str, award_id: str) -> AwardRow | None: ...
    def revoke_award(self, tenant_id: str, award_id: str, at: datetime, reason: str) -> bool: ...
    def log(self, tenant_id: str, rows: Sequence[IssuanceRow]) -> None: ...
    def issuance(
        self, tenant_id: str, badge_id: str | None, player_id: str | None, after_id: int, limit: int
    ) -> list[tuple[int, IssuanceRow]]: ...


class RuleSetRepository(Protocol):
    def add(self, record: RuleSetRecord) -> None: ...
    def get(self, tenant_id: str, ruleset_id: str) -> RuleSetRecord | None: ...
    def all_of(self, tenant_id: str) -> list[RuleSetRecord]: ...
    def save_draft(self, tenant_id: str, ruleset_id: str, draft: str, at: datetime) -> None: ...
    def add_version(self, tenant_id: str, version: RuleSetVersion) -> None: ...
    def versions(self, tenant_id: str, ruleset_id: str) -> list[RuleSetVersion]: ...
    def version(self, tenant_id: str, ruleset_id: str, number: int) -> RuleSetVersion | None: ...
    def live(self, tenant_id: str) -> LiveRuleSet | None: ...
    def set_live(self, tenant_id: str, live: LiveRuleSet, from_position: int) -> None:
        """Make ``live`` the tenant's rule set, for events after ``from_position``."""
        ...

    def tenants_with_epochs(self) -> set[str]:
        """Tenants that have published a rule set (whose events get scored)."""
        ...

    def epochs(self, tenant_id: str) -> list[tuple[int, str, int]]:
        """(from_position, ruleset_id, version), oldest first."""
        ...


class ScoringRepository(Protocol):
    def cursor(self, name: str) -> int: ...
    def cursors(self, names: Iterable[str]) -> dict[str, int]:
        """Several cursors in one read (0 for one never set)."""
        ...

    def set_cursor(self, name: str, position: int) -> None: ...
    def set_cursors(self, positions: Mapping[str, int]) -> None: ...
    def lock_cursors(self, names: Iterable[str]) -> dict[str, int]:
        """The cursors (created at 0 if need be), locked until the transaction ends."""
        ...

    def states(self, tenant_id: str, player_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        """Stored player states (locked until the transaction ends, in a write)."""
        ...

    def state_versions(self, tenant_id: str, player_ids: Iterable[str]) -> dict[str, int]:
        """The write token of each stored state, the rows locked until the transaction ends."""
        ...

    def save_states(
        self, tenant_id: str, states: Mapping[str, Mapping[str, Any]], at: datetime
    ) -> int:
        """Write states; returns the write token they now carry."""
        ...

    def save_encoded_states(
        self, tenant_id: str, states: Mapping[str, str], at: datetime, token: int
    ) -> None:
        """Write states already encoded as JSON text, carrying the given write token."""
        ...

    def append_ledger(self, tenant_id: str, rows: Sequence[LedgerRow], at: datetime) -> int: ...
    def ledger(
        self, tenant_id: str, player_id: str, after_id: int, limit: int
    ) -> list[LedgerEntry]: ...
    def balances(self, tenant_id: str, player_id: str) -> dict[str, float]: ...
    def add_awards(self, tenant_id: str, rows: Sequence[AwardRow]) -> int: ...
    def awards(
        self, tenant_id: str, player_id: str | None = None, badge_id: str | None = None
    ) -> list[AwardRow]: ...
    def add_level_ups(self, tenant_id: str, rows: Sequence[LevelUpRow]) -> None: ...
    def add_rule_errors(self, tenant_id: str, rows: Sequence[RuleErrorRow]) -> None: ...
    def rule_errors(
        self, tenant_id: str, event_id: str | None, after_id: int, limit: int
    ) -> list[tuple[int, RuleErrorRow]]: ...
    def adjusted_tenants(self, tenant_id: str | None) -> list[str]: ...
    def adjustments(self, tenant_id: str) -> list[LedgerRow]:
        """Manual adjustments, oldest first."""
        ...

    def retract(
        self, tenant_id: str, event_id: str, reason: str, actor: str, at: datetime
    ) -> bool: ...
    def retracted(self, tenant_id: str, event_ids: Iterable[str]) -> set[str]: ...
    def event_ledger(self, tenant_id: str, event_id: str) -> list[LedgerRow]: ...
    def move_player(self, tenant_id: str, from_player: str, to_player: str) -> None:
        """Give one player's ledger entries, awards and rule errors to another; drop the
        first one's state and level-ups (the caller rebuilds the second one's)."""
        ...

    def derived_totals(self, tenant_id: str) -> dict[tuple[str, str], float]:
        """(player, currency) -> sum of what rules gave (rule, retraction, backfill entries)."""
        ...

    def save_backfill(self, tenant_id: str, record: Mapping[str, Any]) -> None: ...
    def backfill(self, tenant_id: str, backfill_id: str) -> dict[str, Any] | None: ...
    def forget_derived(self, tenant_id: str | None) -> None:
        """Delete what scoring derived (rule ledger entries, rule awards, level-ups, states,
        rule errors): the log and manual entries stay."""
        ...


class BoardEntryRow(NamedTuple):
    """What one event (``ref``) or adjustment put on one board. ``by_subject``: not found
    through its subject's events (an adjustment's, or a group's), so indexed by subject."""

    ref: str
    board_id: str
    window: str
    subject: str
    units: int
    reached_us: int
    by_subject: bool = True


class BoardScoreRow(NamedTuple):
    """A window's score as ``board_scores`` holds it (a named tuple: the projector reads
    every changed one)."""

    tenant_id: str
    board_id: str
    window: str
    subject: str
    units: int
    reached_us: int
    entries: int  # 0: the subject left the window
    seq: int


class BoardRepository(Protocol):
    def add_entries(self, tenant_id: str, entries: Sequence[BoardEntryRow]) -> None:
        """Record the entries and add them to the windows' scores."""
        ...

    def remove_entries(self, tenant_id: str, ref: str) -> list[BoardEntryRow]:
        """Delete what ``ref`` put on boards; the scores are recomputed from what remains."""
        ...

    def replace_event_entries(self, tenant_id: str, entries: Sequence[BoardEntryRow]) -> None:
        """A backfill: every event's entries become these (adjustments' stay); every score
        is recomputed from the entries."""
        ...

    def move_subject(self, tenant_id: str, from_subject: str, to_subject: str) -> None:
        """A merge: the absorbed player's entries become the survivor's."""
        ...

    def changed_since(self, seq: int) -> Iterator[BoardScoreRow]:
        """Rows changed after ``seq``, in ``seq`` order."""
        ...

    def last_seq(self) -> int: ...

    def window(self, tenant_id: str, board_id: str, window: str) -> list[BoardScoreRow]: ...

    def ranked(
        self,
        tenant_id: str,
        board_id: str,
        window: str,
        min_units: int | None,
        offset: int,
        limit: int,
    ) -> list[BoardScoreRow]:
        """Listed rows in rank order (closed windows are read from SQL)."""
        ...

    def rank_of(
        self, tenant_id: str, board_id: str, window: str, subject: str, min_units: int | None
    ) -> tuple[int, BoardScoreRow] | None: ...

    def count(self, tenant_id: str, board_id: str, window: str, min_units: int | None) -> int: ...

    def windows(
        self, tenant_id: str, board_id: str, min_units: int | None
    ) -> list[tuple[str, int]]:
        """Every window with listed scores, newest first, with its number of participants."""
        ...

    def forget(self, tenant_id: str | None) -> None: ...

    def optouts(self, tenant_id: str) -> set[str]: ...

    def set_optout(self, tenant_id: str, player_id: str, hidden: bool, at: datetime) -> None: ...


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    """A message to write in the transaction of the effect it reports."""

    type: str
    key: str  # what it reports: the same key is never written twice for a tenant
    player_id: str | None
    data: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class StoredMessage:
    seq: int
    id: str
    tenant_id: str
    type: str
    player_id: str | None
    data: dict[str, Any]
    created_at: datetime


class OutboxRepository(Protocol):
    def add(self, tenant_id: str, messages: Sequence[OutboxMessage], at: datetime) -> int:
        """Write the messages whose key is new; returns how many were written."""
        ...

    def has(self, tenant_id: str, key: str) -> bool: ...
    def after(self, seq: int, limit: int) -> list[StoredMessage]: ...
    def get_many(self, seqs: Iterable[int]) -> dict[int, StoredMessage]: ...
    def for_player(
        self, tenant_id: str, player_id: str, types: Iterable[str], after_seq: int, limit: int
    ) -> list[StoredMessage]: ...
    def last_seq(self) -> int: ...
    def purge(self, before: datetime) -> int:
        """Drop messages older than ``before`` that no unfinished or dead delivery needs."""
        ...


@dataclass(frozen=True, slots=True)
class Subscription:
    id: str
    tenant_id: str
    url: str
    event_types: tuple[str, ...]
    filter: str | None
    description: str
    enabled: bool
    ordered: bool
    max_in_flight: int
    created_at: datetime
    updated_at: datetime
    disabled_at: datetime | None = None
    disabled_reason: str | None = None
    failing_since: datetime | None = None
    last_success_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class SecretRow:
    secret: str
    created_at: datetime
    expires_at: datetime | None


@dataclass(frozen=True, slots=True)
class Delivery:
    id: str
    tenant_id: str
    subscription_id: str
    message_seq: int
    player_id: str | None
    status: str  # pending | sending | delivered | dead
    attempts: int
    due_at: datetime | None
    last_error: str | None
    created_at: datetime
    finished_at: datetime | None


@dataclass(frozen=True, slots=True)
class AttemptRow:
    delivery_id: str
    subscription_id: str
    message_id: str
    number: int
    started_at: datetime
    status_code: int | None
    latency_ms: float
    error: str | None
    excerpt: str | None


@dataclass(frozen=True, slots=True)
class DeliveryUpdate:
    """How an attempt ended: the delivery's new status, and when to try again."""

    delivery_id: str
    status: str
    due_at: datetime | None
    last_error: str | None
    finished_at: datetime | None


class WebhookRepository(Protocol):
    def subscriptions(self, tenant_id: str | None) -> list[Subscription]:
        """Every subscription not deleted (of one tenant, or of all)."""
        ...

    def get(self, tenant_id: str, subscription_id: str) -> Subscription | None: ...
    def save(self, sub: Subscription) -> None: ...
    def delete(self, tenant_id: str, subscription_id: str, at: datetime) -> bool: ...
    def wants(self, tenant_id: str, event_type: str) -> bool:
        """Whether an enabled subscription of the tenant asks for this type."""
        ...

    def secrets(self, subscription_ids: Iterable[str], at: datetime) -> dict[str, list[str]]:
        """The secrets that sign now, newest first, per subscription."""
        ...

    def secret_rows(self, tenant_id: str, subscription_id: str) -> list[SecretRow]: ...
    def add_secret(
        self, tenant_id: str, subscription_id: str, secret: str, at: datetime
    ) -> None: ...
    def expire_secrets(self, tenant_id: str, subscription_id: str, at: datetime) -> None:
        """Every secret still valid after ``at`` stops signing at ``at``."""
        ...

    def add_deliveries(self, rows: Sequence[Delivery]) -> int: ...
    def any_due(self, now: datetime) -> bool: ...
    def due(self, subscription_id: str, now: datetime, limit: int) -> list[Delivery]:
        """A subscription's undelivered deliveries whose time has come, oldest due first."""
        ...

    def sending(self, now: datetime) -> dict[str, int]:
        """Attempts under way (lease not run out) per subscription."""
        ...

    def blocked(self, deliveries: Sequence[Delivery]) -> set[str]:
        """Of these deliveries, those with an earlier undelivered one for the same player
        and subscription (ordered subscriptions send one player's messages in order)."""
        ...

    def claim(self, delivery_ids: Sequence[str], lease_until: datetime) -> None: ...
    def finish(self, updates: Sequence[DeliveryUpdate]) -> None: ...
    def log_attempts(self, tenant_id: str, rows: Sequence[AttemptRow]) -> None: ...
    def deliveries(
        self,
        tenant_id: str,
        subscription_id: str,
        status: str | None,
        after_seq: int,
        limit: int,
    ) -> list[Delivery]: ...
    def delivery(self, tenant_id: str, delivery_id: str) -> Delivery | None: ...
    def attempts(
        self,
        tenant_id: str,
        subscription_id: str,
        delivery_id: str | None,
        after_id: int,
        limit: int,
    ) -> list[tuple[int, AttemptRow]]: ...
    def redeliver(
        self, tenant_id: str, subscription_id: str, delivery_ids: Sequence[str] | None, at: datetime
    ) -> int:
        """Queue again the given finished deliveries, or every dead one when None."""
        ...

    def purge(self, before: datetime) -> int:
        """Drop finished deliveries (and their attempts) older than ``before``."""
        ...


@dataclass(frozen=True, slots=True)
class AuditRow:
    at: datetime
    actor: str
    action: str
    resource_type: str
    resource_id: str
    before: Mapping[str, Any] | None
    after: Mapping[str, Any] | None


@dataclass(frozen=True, slots=True)
class AuditQuery:
    resource_type: str | None = None
    resource_id: str | None = None
    actor: str | None = None
    action: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    before_id: int = 0  # newest first: only entries older than this one
    limit: int = 100


class AuditRepository(Protocol):
    """Append-only: there is no way to change or remove an entry."""

    def add(self, tenant_id: str, row: AuditRow) -> None: ...
    def query(self, tenant_id: str, query: AuditQuery) -> list[tuple[int, AuditRow]]: ...


class HeldEvent(NamedTuple):
    event_id: str
    player_id: str
    position: int
    reason: str
    held_at: datetime


class HoldRepository(Protocol):
    def add(self, tenant_id: str, rows: Sequence[HeldEvent]) -> None: ...
    def decided(self, tenant_id: str, event_ids: Iterable[str]) -> dict[str, str]:
        """Of these events, those reviewed: ``released`` or ``rejected``."""
        ...

    def pending(self, tenant_id: str, player_id: str | None = None) -> list[HeldEvent]:
        """Undecided holds (of one player, or all), in log order."""
        ...

    def decide(
        self, tenant_id: str, event_ids: Sequence[str], status: str, at: datetime, by: str
    ) -> None: ...
    def typical_day(
        self, tenant_id: str, day: str, start: datetime, end: datetime, at: datetime
    ) -> float:
        """The median of the day's active players' event counts: stored once, computed
        from the log the first time it is asked for."""
        ...


class UnitOfWork(Protocol):
    audit: AuditRepository
    holds: HoldRepository
    outbox: OutboxRepository
    webhooks: WebhookRepository
    boards: BoardRepository
    badges: BadgeRepository
    rulesets: RuleSetRepository
    scoring: ScoringRepository
    tenants: TenantRepository
    keys: ApiKeyRepository
    players: PlayerRepository
    events: EventRepository
    sequences: SequenceRepository
    idempotency: IdempotencyRepository

    def commit(self) -> None: ...
    def end_snapshot(self) -> None:
        """(A read.) Let go of the snapshot read so far: a later read takes a new one. A long
        read keeps SQLite's write-ahead log from starting over, and every write slows as
        that log grows."""
        ...


class Database(Protocol):
    """A source of units of work. ``write()`` serializes writers where the backend needs it."""

    def write(
        self, durable: bool = True, foreign_keys: bool = True
    ) -> AbstractContextManager[UnitOfWork]: ...
    def read(self) -> AbstractContextManager[UnitOfWork]: ...
    def ping(self) -> None: ...
    def close(self) -> None: ...
    def opener(self) -> tuple[Callable[[str], Database], str] | None:
        """How another process opens this database (a top-level function and its URL), or
        None when it cannot (a database in this process's memory)."""
        ...
