"""Tables. Every one carries ``tenant_id``; names of constraints follow one convention."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)


def tenant_checked_on_sqlite() -> ForeignKeyConstraint:
    """The tenant's foreign key of a table written with every event (the log, the effects of
    scoring), declared for SQLite only. PostgreSQL checks a foreign key with a trigger per
    row that queries the tenant and locks its row (``FOR KEY SHARE``; a lock shared by two
    transactions is a multixact): COPY of 1,000-event batches into the log went from 28,000
    to 37,000 rows/s without it. Such a row's tenant is the authenticated caller's (an
    existing tenant), and tenants are never deleted; SQLite checks the key by its primary
    index at a cost too small to measure, and keeps it."""
    return ForeignKeyConstraint(["tenant_id"], ["tenants.id"]).ddl_if(dialect="sqlite")


class UtcDateTime(TypeDecorator[datetime]):
    """Aware datetimes in, aware UTC datetimes out, whatever the database keeps."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC).replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


tenants = Table(
    "tenants",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("tenant_id", String(64), ForeignKey("tenants.id"), nullable=False),
    Column("name", String(200), nullable=False),
    Column("hash", String(64), nullable=False, unique=True),
    Column("display_prefix", String(16), nullable=False),
    Column("scopes", String(200), nullable=False),  # space-separated
    Column("created_at", UtcDateTime, nullable=False),
    Column("revoked_at", UtcDateTime),
    Index(None, "tenant_id", "created_at"),
)

players = Table(
    "players",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("tenant_id", String(64), ForeignKey("tenants.id"), nullable=False),
    Column("display_name", String(200)),
    Column("time_zone", String(64)),
    Column("locale", String(35)),
    Column("attributes", JSON, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("merged_into", String(40)),
    Index(None, "tenant_id", "id"),
)

identities = Table(
    "identities",
    metadata,
    Column("tenant_id", String(64), ForeignKey("tenants.id"), primary_key=True),
    Column("source", String(64), primary_key=True),
    Column("external_id", String(255), primary_key=True),
    Column("player_id", String(40), ForeignKey("players.id"), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Index(None, "tenant_id", "player_id"),
)

player_merges = Table(
    "player_merges",
    metadata,
    Column("tenant_id", String(64), ForeignKey("tenants.id"), primary_key=True),
    Column("absorbed_id", String(40), primary_key=True),
    Column("survivor_id", String(40), nullable=False),
    Column("merged_at", UtcDateTime, nullable=False),
)

events = Table(
    "events",
    metadata,
    # The log's order: monotonic, never reused (AUTOINCREMENT on SQLite).
    Column(
        "position",
        BigInteger().with_variant(Integer, "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    Column("id", String(40), nullable=False, unique=True),
    Column("tenant_id", String(64), nullable=False),
    tenant_checked_on_sqlite(),
    Column("source", String(64), nullable=False),
    Column("key", String(255), nullable=False),
    Column("type", String(128), nullable=False),
    Column("player_id", String(40), nullable=False),
    Column("actor", String(255), nullable=False),
    Column("occurred_at", UtcDateTime, nullable=False),
    Column("received_at", UtcDateTime, nullable=False),
    Column("properties", JSON, nullable=False),
    Column("sequence", BigInteger),
    # partition_of(tenant_id, player_id): which scoring worker takes it (scale-out mode).
    Column("partition", SmallInteger, nullable=False, server_default="0"),
    UniqueConstraint("tenant_id", "source", "key"),
    Index(None, "tenant_id", "type", "position"),
    Index(None, "partition", "position"),
    Index(None, "tenant_id", "occurred_at"),
    # By player: on PostgreSQL an index of the log, kept as events are appended (about 6 µs
    # an event, against about 15 for player_events' copy and the read of the log that fills
    # it). SQLite keeps player_events instead (see there).
    Index(None, "tenant_id", "player_id", "position").ddl_if(dialect="postgresql"),
    sqlite_autoincrement=True,
)

sequence_runs = Table(
    "sequence_runs",
    metadata,
    Column("tenant_id", String(64), ForeignKey("tenants.id"), primary_key=True),
    Column("source", String(64), primary_key=True),
    Column("first", BigInteger, primary_key=True),
    Column("last", BigInteger, nullable=False),
)

idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("tenant_id", String(64), ForeignKey("tenants.id"), primary_key=True),
    Column("key", String(255), primary_key=True),
    Column("fingerprint", String(64), nullable=False),
    Column("state", String(16), nullable=False),  # in_flight | done
    Column("status_code", Integer),
    Column("content_type", String(100)),
    Column("body", LargeBinary),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Index(None, "expires_at"),
)

rulesets = Table(
    "rulesets",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("tenant_id", String(64), ForeignKey("tenants.id"), nullable=False),
    Column("name", String(200), nullable=False),
    Column("draft", Text, nullable=False),  # the document as written (YAML or JSON)
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Index(None, "tenant_id", "id"),
)

ruleset_versions = Table(
    "ruleset_versions",
    metadata,
    Column("ruleset_id", String(40), ForeignKey("rulesets.id"), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("tenant_id", String(64), ForeignKey("tenants.id"), nullable=False),
    Column("source", Text, nullable=False),
    Column("published_at", UtcDateTime, nullable=False),
    Column("published_by", String(64), nullable=False),
    Column("note", String(500), nullable=False),
)

live_rulesets = Table(
    "live_rulesets",
    metadata,
    Column("tenant_id", String(64), ForeignKey("tenants.id"), primary_key=True),
    Column("ruleset_id", String(40), nullable=False),
    Column("version", Integer, nullable=False),
    Column("since", UtcDateTime, nullable=False),
)

ledger = Table(
    "ledger",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("tenant_id", String(64), nullable=False),
    tenant_checked_on_sqlite(),
    Column("player_id", String(40), nullable=False),
    Column("currency", String(32), nullable=False),
    Column("amount", Numeric(20, 4, asdecimal=False), nullable=False),
    Column("kind", String(16), nullable=False),  # rule | adjustment
    Column("rule_id", String(64), nullable=False),  # "" for adjustments
    Column("ruleset_id", String(40)),
    Column("ruleset_version", Integer),
    Column("event_id", String(40)),
    Column("reason", String(500)),
    Column("actor", String(64)),  # who made an adjustment
    Column("occurred_at", UtcDateTime, nullable=False),
    Column("recorded_at", UtcDateTime, nullable=False),
    # An effect is keyed by (event, rule): a redelivered event never pays twice.
    UniqueConstraint("tenant_id", "event_id", "rule_id", "currency"),
    # No index by player: entries go to random players, and such an index was the dearest
    # part of writing an entry (SQLite writes each page a transaction touches whole: a tenth
    # of the embedded mode's scoring rate; PostgreSQL inserts each entry at one of as many
    # places as there are players: 9 of its 21 µs of CPU an entry, bench/README.md). A
    # player's entries are found through their events (indexed by player, then the unique
    # key above), and the few entries without an event through this partial index.
    Index(
        "ix_ledger_without_event",
        "tenant_id",
        "player_id",
        "id",
        sqlite_where=text("event_id IS NULL"),
        postgresql_where=text("event_id IS NULL"),
    ),
    sqlite_autoincrement=True,
)

badge_awards = Table(
    "badge_awards",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("tenant_id", String(64), nullable=False),
    tenant_checked_on_sqlite(),
    Column("player_id", String(40), nullable=False),
    Column("badge_id", String(64), nullable=False),
    Column("tier", String(50), nullable=False),  # "" when untiered
    Column("occurrence", Integer, nullable=False),
    Column("source", String(16), nullable=False),  # rule | manual
    Column("event_id", String(40)),
    Column("ruleset_id", String(40)),
    Column("ruleset_version", Integer),
    Column("evidence", JSON),
    Column("awarded_by", String(64)),
    Column("awarded_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime),
    Column("revoked_at", UtcDateTime),
    Column("revoked_reason", String(500)),
    # A rule award is keyed by the event that earned it (manual awards have no event).
    UniqueConstraint("tenant_id", "event_id", "badge_id", "tier", "occurrence"),
    Index(None, "tenant_id", "player_id", "badge_id"),
    Index(None, "tenant_id", "badge_id", "awarded_at"),
)

level_ups = Table(
    "level_ups",
    metadata,
    Column("tenant_id", String(64), primary_key=True),
    tenant_checked_on_sqlite(),
    Column("player_id", String(40), primary_key=True),
    Column("currency", String(32), primary_key=True),
    Column("level_index", Integer, primary_key=True),
    Column("level", String(100), nullable=False),
    Column("event_id", String(40)),
    Column("reached_at", UtcDateTime, nullable=False),
)

player_states = Table(
    "player_states",
    metadata,
    Column("tenant_id", String(64), primary_key=True),
    tenant_checked_on_sqlite(),
    Column("player_id", String(40), primary_key=True),
    Column("state", JSON, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    # A random token set by each write: a worker caching a state knows it is still the one
    # in the store when the token is the one its own write set.
    Column("version", BigInteger, nullable=False, server_default="0"),
)

rule_errors = Table(
    "rule_errors",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("tenant_id", String(64), nullable=False),
    tenant_checked_on_sqlite(),
    Column("event_id", String(40), nullable=False),
    Column("player_id", String(40), nullable=False),
    Column("rule_id", String(80), nullable=False),
    Column("ruleset_id", String(40), nullable=False),
    Column("ruleset_version", Integer, nullable=False),
    Column("message", String(1000), nullable=False),
    Column("at", UtcDateTime, nullable=False),
    UniqueConstraint("tenant_id", "event_id", "rule_id"),
    Index(None, "tenant_id", "id"),
)

cursors = Table(
    "cursors",
    metadata,
    Column("name", String(64), primary_key=True),  # one per consumer of the log
    Column("position", BigInteger, nullable=False),
)

ruleset_epochs = Table(
    "ruleset_epochs",
    metadata,
    # Events after ``from_position`` in the log are scored by this version: which version
    # scores an event depends on the log, not on when a worker got to it, so replays agree.
    Column("tenant_id", String(64), ForeignKey("tenants.id"), primary_key=True),
    Column("from_position", BigInteger, primary_key=True),
    Column("ruleset_id", String(40), nullable=False),
    Column("version", Integer, nullable=False),
)

badge_classes = Table(
    "badge_classes",
    metadata,
    # Badges managed through the API (awarded by hand); rule-set badges live in the rule set.
    Column("tenant_id", String(64), ForeignKey("tenants.id"), primary_key=True),
    Column("id", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("description", Text, nullable=False),
    Column("image", String(2000)),
    Column("narrative", Text, nullable=False),
    Column("tags", JSON, nullable=False),
    Column("alignment", JSON, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("deleted_at", UtcDateTime),
)

issuance_log = Table(
    "issuance_log",
    metadata,
    # Append-only: every issue and revocation of a badge, by whom or by which rule, and why.
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("tenant_id", String(64), nullable=False),
    tenant_checked_on_sqlite(),
    Column("award_id", String(40), nullable=False),
    Column("player_id", String(40), nullable=False),
    Column("badge_id", String(64), nullable=False),
    Column("action", String(16), nullable=False),  # issued | revoked
    Column("actor", String(100), nullable=False),  # key_… or ruleset:rs_…@N
    Column("reason", String(1000), nullable=False),
    Column("at", UtcDateTime, nullable=False),
    Index(None, "tenant_id", "badge_id", "id"),
    Index(None, "tenant_id", "player_id", "id"),
    sqlite_autoincrement=True,
)

event_retractions = Table(
    "event_retractions",
    metadata,
    # The log is append-only: a retraction is a fact about an event, not an edit of it.
    Column("tenant_id", String(64), ForeignKey("tenants.id"), primary_key=True),
    Column("event_id", String(40), primary_key=True),
    Column("reason", String(1000), nullable=False),
    Column("actor", String(100), nullable=False),
    Column("at", UtcDateTime, nullable=False),
)

backfills = Table(
    "backfills",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("tenant_id", String(64), ForeignKey("tenants.id"), nullable=False),
    Column("ruleset_id", String(40), nullable=False),
    Column("version", Integer, nullable=False),
    Column("applied", JSON, nullable=False),  # what was awarded at once
    Column("pending", JSON, nullable=False),  # losses held for an admin to confirm
    Column("status", String(16), nullable=False),  # pending | confirmed | nothing-pending
    Column("created_at", UtcDateTime, nullable=False),
    Column("created_by", String(100), nullable=False),
    Column("confirmed_at", UtcDateTime),
    Column("confirmed_by", String(100)),
    Index(None, "tenant_id", "created_at"),
)

player_events = Table(
    "player_events",
    metadata,
    # Which log positions belong to which player, on SQLite (empty on PostgreSQL, which
    # indexes the log by player itself). Kept by a worker, in large batches, off the ingest
    # path: SQLite writes each page a transaction touches whole, an index on
    # events(player_id) is written at random places (players are random), and maintaining
    # it on every ingest cost more than the rest of the insert. Reads by player use it up
    # to the "player-index" cursor and scan the short tail after.
    Column("tenant_id", String(64), primary_key=True),
    Column("player_id", String(40), primary_key=True),
    Column("position", BigInteger, primary_key=True),
    sqlite_with_rowid=False,
)

board_entries = Table(
    "board_entries",
    metadata,
    # What one event (or manual adjustment) put on one board: reversed exactly on retraction,
    # and the sum of a window's entries is its score in board_scores.
    Column("tenant_id", String(64), primary_key=True),
    Column("ref", String(40), primary_key=True),  # event id, or adjustment id
    Column("board_id", String(64), primary_key=True),
    Column("window", String(16), nullable=False),
    Column("subject", String(200), nullable=False),
    Column("units", BigInteger, nullable=False),  # score times 10,000
    Column("reached_us", BigInteger, nullable=False),  # occurred_at, µs since the epoch
    # PostgreSQL indexes by subject only the entries the subject's events do not lead to:
    # an entry is written for a random player with nearly every event, and an index of them
    # all by subject was one of the dearest parts of writing one (as the ledger's by player).
    # An event's entry for its own player is found through the player's events (by player,
    # then the primary key); an adjustment's, or a group's, by the partial index. SQLite
    # keeps the whole index: without statistics its planner prefers a table's primary key
    # to a partial index for a table without rowid.
    Column("by_subject", Boolean, nullable=False, server_default=text("true")),
    Index(None, "tenant_id", "board_id", "window", "subject").ddl_if(dialect="sqlite"),
    Index(
        "ix_board_entries_by_subject",
        "tenant_id",
        "board_id",
        "window",
        "subject",
        postgresql_where=text("by_subject"),
    ).ddl_if(dialect="postgresql"),
    sqlite_with_rowid=False,
)

board_scores = Table(
    "board_scores",
    metadata,
    # The durable standings every projection is built from and compared with. ``seq`` grows
    # with each transaction that changes rows, so a projector can tail what changed.
    Column("tenant_id", String(64), primary_key=True),
    Column("board_id", String(64), primary_key=True),
    Column("window", String(16), primary_key=True),
    Column("subject", String(200), primary_key=True),
    Column("units", BigInteger, nullable=False),
    Column("reached_us", BigInteger, nullable=False),
    # Contributions in the score; 0 marks a subject that left the window (a retraction, a
    # merge), kept so that projectors tailing ``seq`` see it go.
    Column("entries", Integer, nullable=False),
    Column("seq", BigInteger, nullable=False),
    Index(None, "seq"),
    sqlite_with_rowid=False,
)
# The all-time window's key (leaderboards.windows.ALL_TIME).
ALL_TIME_WINDOW = "all"
# Standings of a closed window are read from SQL in rank order; with ``entries`` the index
# covers a rank (the count of better rows) without touching the table. An all-time window
# never closes (the projection answers it), so its rows are left out: its totals change
# with nearly every event, and each change wrote an entry here too (an upsert of 200 totals
# a transaction: 37 µs a row with it, 27 - 30 without). Queries state the predicate
# (SqlBoards._listed): a planner uses a partial index only where it sees the query implies it.
RANKED_WINDOWS = text(f"\"window\" <> '{ALL_TIME_WINDOW}'")
Index(
    "ix_board_scores_ranked",
    board_scores.c.tenant_id,
    board_scores.c.board_id,
    board_scores.c.window,
    board_scores.c.units.desc(),
    board_scores.c.reached_us,
    board_scores.c.subject,
    board_scores.c.entries,
    postgresql_where=RANKED_WINDOWS,
    sqlite_where=RANKED_WINDOWS,
)

board_optouts = Table(
    "board_optouts",
    metadata,
    # Players hidden from others on every board (they still see their own rank).
    Column("tenant_id", String(64), ForeignKey("tenants.id"), primary_key=True),
    Column("player_id", String(40), primary_key=True),
    Column("since", UtcDateTime, nullable=False),
)

outbox = Table(
    "outbox",
    metadata,
    # What others are told (webhooks, player streams), written in the transaction of the
    # effect it reports. ``seq`` orders it; the dispatcher and the streams tail it.
    Column(
        "seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("id", String(40), nullable=False),  # msg_…: the webhook-id receivers dedupe on
    Column("tenant_id", String(64), nullable=False),
    tenant_checked_on_sqlite(),
    Column("type", String(64), nullable=False),
    # What the message reports, so that nothing is told twice (e.g. one window's closing).
    Column("key", String(300), nullable=False),
    Column("player_id", String(40)),
    Column("data", JSON, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    UniqueConstraint("tenant_id", "key"),
    Index(None, "tenant_id", "player_id", "seq"),
    Index(None, "created_at"),
    sqlite_autoincrement=True,
)

webhook_subscriptions = Table(
    "webhook_subscriptions",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("tenant_id", String(64), ForeignKey("tenants.id"), nullable=False),
    Column("url", String(2048), nullable=False),
    Column("event_types", JSON, nullable=False),
    Column("filter", Text),  # a CEL condition on the message, or NULL
    Column("description", String(500), nullable=False),
    Column("enabled", Boolean, nullable=False),
    Column("ordered", Boolean, nullable=False),  # one player's messages one at a time, in order
    Column("max_in_flight", Integer, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("disabled_at", UtcDateTime),
    Column("disabled_reason", String(500)),
    Column("failing_since", UtcDateTime),  # first failure after the last success
    Column("last_success_at", UtcDateTime),
    Column("deleted_at", UtcDateTime),
    Index(None, "tenant_id", "id"),
)

webhook_secrets = Table(
    "webhook_secrets",
    metadata,
    # Every secret that signs; during a rotation's overlap the old one signs too, until it
    # expires.
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("tenant_id", String(64), ForeignKey("tenants.id"), nullable=False),
    Column("subscription_id", String(40), nullable=False),
    Column("secret", String(100), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime),
    Index(None, "subscription_id"),
)

webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    # One message to one subscription. ``due_at`` is set while it is undelivered: when the
    # next attempt may start, or while an attempt runs, when its lease runs out (a crashed
    # dispatcher's message is then sent again, with the same webhook-id).
    Column("id", String(40), primary_key=True),
    Column("tenant_id", String(64), ForeignKey("tenants.id"), nullable=False),
    Column("subscription_id", String(40), nullable=False),
    Column("message_seq", BigInteger, nullable=False),
    Column("player_id", String(40)),
    Column("status", String(12), nullable=False),  # pending | sending | delivered | dead
    Column("attempts", Integer, nullable=False),
    Column("due_at", UtcDateTime),
    Column("last_error", String(1000)),
    Column("created_at", UtcDateTime, nullable=False),
    Column("finished_at", UtcDateTime),
    UniqueConstraint("subscription_id", "message_seq"),
    Index(None, "due_at"),
    Index(None, "subscription_id", "due_at"),  # what is due for one endpoint
    Index(None, "status", "due_at"),  # attempts under way
    Index(None, "subscription_id", "player_id", "message_seq"),
    Index(None, "tenant_id", "subscription_id", "status", "message_seq"),
)

webhook_attempts = Table(
    "webhook_attempts",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("tenant_id", String(64), ForeignKey("tenants.id"), nullable=False),
    Column("subscription_id", String(40), nullable=False),
    Column("delivery_id", String(40), nullable=False),
    Column("message_id", String(40), nullable=False),
    Column("number", Integer, nullable=False),
    Column("started_at", UtcDateTime, nullable=False),
    Column("status_code", Integer),  # NULL when no response came (timeout, refused…)
    Column("latency_ms", Float, nullable=False),
    Column("error", String(500)),
    Column("excerpt", String(1000)),
    Index(None, "tenant_id", "subscription_id", "id"),
    Index(None, "delivery_id"),
)

audit_log = Table(
    "audit_log",
    metadata,
    # Every admin mutation, with who, when, and the resource before and after. Append-only:
    # triggers refuse UPDATE and DELETE (see the migration).
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("tenant_id", String(64), ForeignKey("tenants.id"), nullable=False),
    Column("at", UtcDateTime, nullable=False),
    Column("actor", String(200), nullable=False),  # api_key:key_…, oidc:sub, cli, system
    Column("action", String(64), nullable=False),  # e.g. ruleset.publish
    Column("resource_type", String(32), nullable=False),
    Column("resource_id", String(200), nullable=False),
    Column("before", JSON),
    Column("after", JSON),
    Index(None, "tenant_id", "id"),
    Index(None, "tenant_id", "resource_type", "resource_id", "id"),
    sqlite_autoincrement=True,
)

held_events = Table(
    "held_events",
    metadata,
    # Events not scored because their player's activity looked abnormal, until an admin
    # releases them (scored in order) or rejects them (retracted). Decisions outlive replays.
    Column("tenant_id", String(64), primary_key=True),
    tenant_checked_on_sqlite(),
    Column("event_id", String(40), primary_key=True),
    Column("player_id", String(40), nullable=False),
    Column("position", BigInteger, nullable=False),
    Column("reason", String(500), nullable=False),
    Column("held_at", UtcDateTime, nullable=False),
    Column("status", String(12), nullable=False),  # pending | released | rejected
    Column("decided_at", UtcDateTime),
    Column("decided_by", String(200)),
    Index(None, "tenant_id", "status", "player_id", "position"),
)

activity_days = Table(
    "activity_days",
    metadata,
    # The median of a day's active players' event counts, frozen when scoring first needs
    # it (the next day's first event): the anti-cheat limit every replay reads back.
    Column("tenant_id", String(64), primary_key=True),
    tenant_checked_on_sqlite(),
    Column("day", String(10), primary_key=True),
    Column("median", Float, nullable=False),
    Column("computed_at", UtcDateTime, nullable=False),
)
