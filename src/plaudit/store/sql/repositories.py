"""Repositories over SQLAlchemy Core. Bulk statements on hot paths, never ORM objects per row."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    ARRAY,
    Connection,
    RowMapping,
    Table,
    Text,
    and_,
    any_,
    bindparam,
    delete,
    func,
    literal,
    or_,
    select,
    union_all,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql import operators
from sqlalchemy.sql.elements import UnaryExpression

from plaudit.domain.auth import Scope
from plaudit.domain.events import StoredEvent
from plaudit.domain.partitions import PARTITIONS
from plaudit.domain.players import Identity, Player
from plaudit.domain.sequences import Run
from plaudit.store.ports import (
    ApiKeyRecord,
    EventQuery,
    IdempotencyRecord,
    NewEventRow,
    Tenant,
)
from plaudit.store.sql import tables as t
from plaudit.store.sql.postgres import (
    EVENT_COLUMNS,
    append_events,
    event_values,
    events_in_partitions,
    fetch,
    stored_event,
)

PLAYER_INDEX = "player-index"  # cursor: how far player_events covers the log

# SQLite allows 32,766 bound parameters per statement; stay well below for IN lists.
_IN_CHUNK = 900

_APPEND_ROW = "(?,?,?,?,?,?,?,?,?,?,?,?)"
_APPEND_CHUNK = 1000  # 12,000 parameters per statement
_APPEND_SQL_HEAD = f"INSERT INTO events ({EVENT_COLUMNS}) VALUES "  # noqa: S608 - constants only
_APPEND_SQL_TAIL = " ON CONFLICT (tenant_id, source, key) DO NOTHING RETURNING source, key"


def _sqlite_datetime(value: datetime) -> str:
    """As SQLAlchemy's SQLite DATETIME stores a UTC instant (what UtcDateTime reads back)."""
    # isoformat with microseconds is the same text as strftime("%Y-%m-%d %H:%M:%S.%f"), in a
    # third less time (scoring formats one per ledger entry).
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def sqlite_insert(
    conn: Connection,
    table: str,
    columns: Sequence[str],
    rows: list[tuple[Any, ...]],
    tail: str = "",
) -> int:
    """Insert rows already in SQLite's terms (times as ``_sqlite_datetime``, JSON as text)
    through the driver: SQLAlchemy's per-row parameter processing costs more than SQLite's
    insert for the rows scoring writes by the thousand. ``tail``: an ON CONFLICT clause."""
    marks = ",".join("?" * len(columns))
    sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks}) {tail}"  # noqa: S608
    return int(conn.exec_driver_sql(sql, rows).rowcount)


def delete_rows(conn: Connection, table: Table, tenant_id: str | None) -> None:
    """Delete a tenant's rows of ``table``, or every row (``tenant_id`` None) with a DELETE
    without WHERE, which SQLite runs by dropping the table's pages at once instead of row by
    row from every index (a full replay empties millions of rows)."""
    if tenant_id is None:
        conn.execute(delete(table))
    else:
        conn.execute(delete(table).where(table.c.tenant_id == tenant_id))


def _identity_rows(
    tenant_id: str, links: Sequence[tuple[Identity, str]], at: datetime
) -> list[dict[str, Any]]:
    return [
        {
            "tenant_id": tenant_id,
            "source": ident.source,
            "external_id": ident.external_id,
            "player_id": player_id,
            "created_at": at,
        }
        for ident, player_id in links
    ]


def _insert(conn: Connection, table: Table) -> Any:
    """The dialect's INSERT, which knows ON CONFLICT."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


# A counter that changes whenever players are written, so that a process caching them can
# tell that someone else wrote some.
PLAYERS_GENERATION = "players-gen"

# Tables read in order of an ever-growing number (the log's position, the outbox's and the
# boards' seq) by followers that remember how far they got. SQLite has one writer at a
# time, so numbers commit in order. On PostgreSQL two transactions could commit 12 before
# 11, and a follower that saw 12 would never look at 11: so the writers of each such table
# take a transaction-scoped advisory lock before they number rows, held until they commit.
# The events lock is only taken by ingestion; the outbox and the boards share one lock, so
# no two transactions ever wait for each other's locks in opposite orders.
LOG_LOCK = 0x504C_0001
TAIL_LOCK = 0x504C_0002
_LOCK_PG = "SELECT pg_advisory_xact_lock(%s)"
_LOCK_NOTIFY_PG = "SELECT pg_advisory_xact_lock(%s), pg_notify(%s, '')"
# Without parameters: ingestion sends it in one message with the COPY's savepoint.
_LOCK_LOG_PG = _LOCK_PG % LOG_LOCK


def serialize(conn: Connection, lock: int, notify: str | None = None) -> None:
    """Number rows in commit order from here to the end of the transaction (PostgreSQL);
    with ``notify``, that channel's listeners hear of it when the transaction commits."""
    if conn.dialect.name != "postgresql":
        return
    if notify is None:
        fetch(conn, _LOCK_PG, (lock,))
    else:
        fetch(conn, _LOCK_NOTIFY_PG, (lock, notify))


_INCREMENT_PG = (
    "ON CONFLICT (name) DO UPDATE SET position = cursors.position + 1 RETURNING position"
)
_BUMP_PG = "INSERT INTO cursors (name, position) VALUES (%s, 1) " + _INCREMENT_PG  # noqa: S608 - constants only


def bump(conn: Connection, name: str) -> int:
    """Add 1 to a counter (1 if it was never set); its new value."""
    if conn.dialect.name == "postgresql":  # once a scoring step: on psycopg (postgres.fetch)
        return int(fetch(conn, _BUMP_PG, (name,))[0][0])
    stmt = _insert(conn, t.cursors).values(name=name, position=1)
    return int(
        conn.execute(
            stmt.on_conflict_do_update(
                index_elements=[t.cursors.c.name], set_={"position": t.cursors.c.position + 1}
            ).returning(t.cursors.c.position)
        ).scalar_one()
    )


# The lock, the notification and the counter's new value in one statement: the row to
# upsert comes from the locking SELECT, so the lock is taken before the counter is read.
_SERIALIZED_BUMP_PG = (
    f"WITH locked AS MATERIALIZED ({_LOCK_NOTIFY_PG}) "  # noqa: S608 - constants only
    f"INSERT INTO cursors (name, position) SELECT %s, 1 FROM locked {_INCREMENT_PG}"
)


def serialized_bump(conn: Connection, lock: int, notify: str, name: str) -> int:
    """``serialize(conn, lock, notify)``, then ``bump(conn, name)``: on PostgreSQL one round
    trip instead of two, and the second was taken holding a lock others wait for (a scoring
    step numbers its board changes this way)."""
    if conn.dialect.name != "postgresql":
        serialize(conn, lock, notify)
        return bump(conn, name)
    return int(fetch(conn, _SERIALIZED_BUMP_PG, (lock, notify, name))[0][0])


def counter(conn: Connection, name: str) -> int:
    """A counter's value (0 if it was never set)."""
    if conn.dialect.name == "postgresql":  # read at every scoring step, group commit and sync
        rows = fetch(conn, "SELECT position FROM cursors WHERE name = %s", (name,))
        return int(rows[0][0]) if rows else 0
    found = conn.execute(select(t.cursors.c.position).where(t.cursors.c.name == name)).scalar()
    return int(found or 0)


def players_generation(conn: Connection) -> int:
    """The players' write counter."""
    return counter(conn, PLAYERS_GENERATION)


_SEPARATOR = "\x1f"  # ASCII's unit separator: _among joins strings with it


def _among(conn: Connection, column: Any, values: Sequence[Any]) -> Any:
    """``column IN values``: on PostgreSQL as ``= ANY(array)``, one parameter however many
    values (psycopg parses a statement's text for each call, and a long IN list made that
    the larger part of a lookup). Strings go as one text the server splits: psycopg dumps
    a list element by element in Python (1,000 ids: 3.9 ms as a list, 0.15 joined), and
    scoring looks up a batch's events and players so; the array is kept for other values
    and for strings that hold the separator."""
    if conn.dialect.name == "postgresql":
        joined = _joined(values)
        if joined is not None:
            return column == any_(
                func.string_to_array(
                    bindparam(None, joined, type_=Text), bindparam(None, _SEPARATOR, type_=Text)
                )
            )
        return column == any_(bindparam(None, list(values), type_=ARRAY(column.type)))
    return column.in_(values)


def _joined(values: Sequence[Any]) -> str | None:
    """Strings as one text for ``string_to_array(text, E'\\x1f')``; None when they cannot go
    so (not strings, one holding the separator, or a lone "", which would split to none)."""
    try:
        joined = _SEPARATOR.join(values)
    except TypeError:
        return None
    if joined and joined.count(_SEPARATOR) == len(values) - 1:
        return joined
    return None


def fetch_among(
    conn: Connection, sql: str, params: Sequence[Any], values: Sequence[Any], tail: str = ""
) -> list[tuple[Any, ...]]:
    """``_among`` for a statement run on psycopg (postgres.fetch): ``sql`` ends with
    ``column = ``; the values go as its last parameter, then ``tail``."""
    joined = _joined(values)
    if joined is None:
        return fetch(conn, f"{sql}ANY(%s){tail}", (*params, list(values)))
    among = f"ANY(string_to_array(%s, chr({ord(_SEPARATOR)})))"
    return fetch(conn, f"{sql}{among}{tail}", (*params, joined))


def _pieces(conn: Connection, items: Sequence[Any]) -> Iterable[Sequence[Any]]:
    """The values for ``_among``: all at once on PostgreSQL, SQLite's IN-list size else."""
    if conn.dialect.name == "postgresql":
        return [items] if items else []
    return _chunks(items)


def _chunks(items: Sequence[Any], size: int = _IN_CHUNK) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class SqlTenants:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def get(self, tenant_id: str) -> Tenant | None:
        row = self.conn.execute(select(t.tenants).where(t.tenants.c.id == tenant_id)).first()
        return Tenant(row.id, row.name, row.created_at) if row else None

    def add(self, tenant: Tenant) -> None:
        self.conn.execute(
            t.tenants.insert().values(id=tenant.id, name=tenant.name, created_at=tenant.created_at)
        )

    def all(self) -> list[Tenant]:
        rows = self.conn.execute(select(t.tenants).order_by(t.tenants.c.id))
        return [Tenant(r.id, r.name, r.created_at) for r in rows]


def _key_record(row: RowMapping) -> ApiKeyRecord:
    return ApiKeyRecord(
        id=row["id"],
        tenant_id=row["tenant_id"],
        name=row["name"],
        display_prefix=row["display_prefix"],
        scopes=frozenset(Scope(s) for s in row["scopes"].split()),
        created_at=row["created_at"],
        revoked_at=row["revoked_at"],
    )


class SqlApiKeys:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def add(self, record: ApiKeyRecord, key_hash: str) -> None:
        self.conn.execute(
            t.api_keys.insert().values(
                id=record.id,
                tenant_id=record.tenant_id,
                name=record.name,
                hash=key_hash,
                display_prefix=record.display_prefix,
                scopes=" ".join(sorted(record.scopes)),
                created_at=record.created_at,
                revoked_at=record.revoked_at,
            )
        )

    def find_by_hash(self, key_hash: str) -> ApiKeyRecord | None:
        row = self.conn.execute(select(t.api_keys).where(t.api_keys.c.hash == key_hash)).first()
        return _key_record(row._mapping) if row else None

    def get(self, tenant_id: str, key_id: str) -> ApiKeyRecord | None:
        row = self.conn.execute(
            select(t.api_keys).where(t.api_keys.c.tenant_id == tenant_id, t.api_keys.c.id == key_id)
        ).first()
        return _key_record(row._mapping) if row else None

    def all_of(self, tenant_id: str | None) -> list[ApiKeyRecord]:
        stmt = select(t.api_keys).order_by(t.api_keys.c.created_at, t.api_keys.c.id)
        if tenant_id is not None:
            stmt = stmt.where(t.api_keys.c.tenant_id == tenant_id)
        return [_key_record(r) for r in self.conn.execute(stmt).mappings()]

    def revoke(self, tenant_id: str, key_id: str, at: datetime) -> bool:
        result = self.conn.execute(
            update(t.api_keys)
            .where(
                t.api_keys.c.tenant_id == tenant_id,
                t.api_keys.c.id == key_id,
                t.api_keys.c.revoked_at.is_(None),
            )
            .values(revoked_at=at)
        )
        return result.rowcount == 1

    def count_active(self, tenant_id: str) -> int:
        return int(
            self.conn.execute(
                select(func.count())
                .select_from(t.api_keys)
                .where(t.api_keys.c.tenant_id == tenant_id, t.api_keys.c.revoked_at.is_(None))
            ).scalar_one()
        )


def _player(row: RowMapping) -> Player:
    return Player(
        id=row["id"],
        tenant_id=row["tenant_id"],
        display_name=row["display_name"],
        time_zone=row["time_zone"],
        locale=row["locale"],
        attributes=row["attributes"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        merged_into=row["merged_into"],
    )


class SqlPlayers:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def get(self, tenant_id: str, player_id: str, lock: bool = False) -> Player | None:
        c = t.players.c
        stmt = select(t.players).where(c.tenant_id == tenant_id, c.id == player_id)
        # A row lock on PostgreSQL (SQLite's writers take turns anyway).
        row = self.conn.execute(stmt.with_for_update() if lock else stmt).first()
        return _player(row._mapping) if row else None

    def get_many(self, tenant_id: str, player_ids: Iterable[str]) -> dict[str, Player]:
        ids = sorted(set(player_ids))
        found: dict[str, Player] = {}
        c = t.players.c
        for chunk in _pieces(self.conn, ids):
            rows = self.conn.execute(
                select(t.players).where(c.tenant_id == tenant_id, _among(self.conn, c.id, chunk))
            ).mappings()
            found.update((r["id"], _player(r)) for r in rows)
        return found

    def generation(self) -> int:
        return players_generation(self.conn)

    def resolve(self, tenant_id: str, wanted: Iterable[Identity]) -> dict[Identity, str]:
        by_source: dict[str, list[str]] = defaultdict(list)
        for ident in wanted:
            by_source[ident.source].append(ident.external_id)
        found: dict[Identity, str] = {}
        c = t.identities.c
        for source, external_ids in by_source.items():
            for chunk in _pieces(self.conn, external_ids):
                rows = self.conn.execute(
                    select(c.external_id, c.player_id).where(
                        c.tenant_id == tenant_id,
                        c.source == source,
                        _among(self.conn, c.external_id, chunk),
                    )
                )
                for external_id, player_id in rows:
                    found[Identity(source, external_id)] = player_id
        return found

    def add_many(self, players: Sequence[Player]) -> None:
        if not players:
            return
        self.conn.execute(
            t.players.insert(),
            [
                {
                    "id": p.id,
                    "tenant_id": p.tenant_id,
                    "display_name": p.display_name,
                    "time_zone": p.time_zone,
                    "locale": p.locale,
                    "attributes": dict(p.attributes),
                    "created_at": p.created_at,
                    "updated_at": p.updated_at,
                    "merged_into": p.merged_into,
                }
                for p in players
            ],
        )

    def add_identities(
        self, tenant_id: str, links: Sequence[tuple[Identity, str]], at: datetime
    ) -> None:
        if not links:
            return
        self.conn.execute(
            t.identities.insert(),
            _identity_rows(tenant_id, links, at),
        )

    def claim_identities(
        self, tenant_id: str, links: Sequence[tuple[Identity, str]], at: datetime
    ) -> set[Identity]:
        """Link each identity to its player unless it is linked already (another process
        may have created the same new player at the same moment); the ones linked here."""
        if not links:
            return set()
        c = t.identities.c
        stmt = (
            _insert(self.conn, t.identities)
            .on_conflict_do_nothing(index_elements=[c.tenant_id, c.source, c.external_id])
            .returning(c.source, c.external_id)
        )
        rows = self.conn.execute(
            stmt,
            _identity_rows(tenant_id, links, at),
        )
        return {Identity(source, external_id) for source, external_id in rows}

    def drop_new(self, tenant_id: str, player_ids: Sequence[str]) -> None:
        """Delete players this transaction created and nothing refers to yet."""
        c = t.players.c
        for chunk in _pieces(self.conn, list(player_ids)):
            self.conn.execute(
                delete(t.players).where(c.tenant_id == tenant_id, _among(self.conn, c.id, chunk))
            )

    def identities_of(self, tenant_id: str, player_id: str) -> list[Identity]:
        c = t.identities.c
        rows = self.conn.execute(
            select(c.source, c.external_id)
            .where(c.tenant_id == tenant_id, c.player_id == player_id)
            .order_by(c.source, c.external_id)
        )
        return [Identity(source, external_id) for source, external_id in rows]

    def page(
        self, tenant_id: str, after_id: str | None, limit: int, source: str | None = None
    ) -> list[Player]:
        c = t.players.c
        stmt = (
            select(t.players)
            .where(c.tenant_id == tenant_id, c.merged_into.is_(None))
            .order_by(c.id)
            .limit(limit)
        )
        if after_id is not None:
            stmt = stmt.where(c.id > after_id)
        if source is not None:
            ic = t.identities.c
            stmt = stmt.where(
                select(ic.player_id)
                .where(ic.tenant_id == tenant_id, ic.source == source, ic.player_id == c.id)
                .exists()
            )
        return [_player(r) for r in self.conn.execute(stmt).mappings()]

    def update(self, player: Player) -> None:
        bump(self.conn, PLAYERS_GENERATION)
        self.conn.execute(
            update(t.players)
            .where(t.players.c.tenant_id == player.tenant_id, t.players.c.id == player.id)
            .values(
                display_name=player.display_name,
                time_zone=player.time_zone,
                locale=player.locale,
                attributes=dict(player.attributes),
                updated_at=player.updated_at,
                merged_into=player.merged_into,
            )
        )

    def repoint_identities(self, tenant_id: str, from_player: str, to_player: str) -> int:
        c = t.identities.c
        result = self.conn.execute(
            update(t.identities)
            .where(c.tenant_id == tenant_id, c.player_id == from_player)
            .values(player_id=to_player)
        )
        return result.rowcount

    def record_merge(
        self, tenant_id: str, absorbed_id: str, survivor_id: str, at: datetime
    ) -> None:
        self.conn.execute(
            t.player_merges.insert().values(
                tenant_id=tenant_id, absorbed_id=absorbed_id, survivor_id=survivor_id, merged_at=at
            )
        )
        # Earlier merges into the absorbed player now lead to the survivor.
        self.conn.execute(
            update(t.players)
            .where(t.players.c.tenant_id == tenant_id, t.players.c.merged_into == absorbed_id)
            .values(merged_into=survivor_id)
        )


# Scoring's read of the log on SQLite, by hand: through SQLAlchemy's row mappings and
# result processors (two datetimes, JSON) it was about 8 µs an event, a twelfth of scoring.
_AFTER_SQL = (
    f"SELECT position, {EVENT_COLUMNS} FROM events "  # noqa: S608 - constants only
    "WHERE position > ? AND position <= ? ORDER BY position LIMIT ?"
)
_MAX_POSITION = 2**63 - 1
_INDEX_PLAYERS_SQL = (
    "INSERT INTO player_events (tenant_id, player_id, position) VALUES (?, ?, ?) "
    "ON CONFLICT DO NOTHING"
)


def _sqlite_events(rows: Iterable[Sequence[Any]]) -> list[StoredEvent]:
    """Log rows as ``_AFTER_SQL`` selects them; times as ``_sqlite_datetime`` wrote them (the
    events of one append share their time of receipt: parsed once)."""
    events = []
    received_text, received_at = None, None
    for r in rows:
        if r[9] != received_text:
            received_text = r[9]
            received_at = datetime.fromisoformat(received_text).replace(tzinfo=UTC)
        assert received_at is not None
        occurred_at = datetime.fromisoformat(r[8]).replace(tzinfo=UTC)
        events.append(stored_event(r, occurred_at, received_at))
    return events


def _event(row: RowMapping) -> StoredEvent:
    return StoredEvent(
        position=row["position"],
        id=row["id"],
        tenant_id=row["tenant_id"],
        source=row["source"],
        key=row["key"],
        type=row["type"],
        player_id=row["player_id"],
        actor=row["actor"],
        occurred_at=row["occurred_at"],
        received_at=row["received_at"],
        properties=row["properties"],
        sequence=row["sequence"],
        partition=row["partition"],
    )


class SqlEvents:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def append(
        self, tenant_id: str, rows: Sequence[NewEventRow], received_at: datetime
    ) -> set[tuple[str, str]]:
        return self.append_many(tenant_id, [(rows, received_at)])

    def append_many(
        self, tenant_id: str, batches: Sequence[tuple[Sequence[NewEventRow], datetime]]
    ) -> set[tuple[str, str]]:
        if self.conn.dialect.name == "sqlite":  # no round trips to save
            inserted: set[tuple[str, str]] = set()
            for rows, received_at in batches:
                if rows:
                    inserted |= self._append_sqlite(tenant_id, rows, received_at)
            return inserted
        # Numbered in commit order from the log's lock on.
        return set(append_events(self.conn, tenant_id, batches, _LOCK_LOG_PG))

    def _append_sqlite(
        self, tenant_id: str, rows: Sequence[NewEventRow], received_at: datetime
    ) -> set[tuple[str, str]]:
        """The same statement, written by hand: SQLAlchemy's per-row parameter processing
        cost as much as SQLite itself on this path (measured: 21 ms of 46 per 1,000 events).
        Values are rendered exactly as the UtcDateTime and JSON column types render them."""
        received = _sqlite_datetime(received_at)
        inserted: set[tuple[str, str]] = set()
        for chunk in _chunks(rows, _APPEND_CHUNK):
            params: list[Any] = []
            for r in chunk:
                params += event_values(tenant_id, r, _sqlite_datetime(r.occurred_at), received)
            sql = _APPEND_SQL_HEAD + ",".join([_APPEND_ROW] * len(chunk)) + _APPEND_SQL_TAIL
            result = self.conn.exec_driver_sql(sql, tuple(params))
            inserted.update((source, key) for source, key in result)
        return inserted

    def existing_ids(
        self, tenant_id: str, keys: Iterable[tuple[str, str]]
    ) -> dict[tuple[str, str], tuple[str, str]]:
        by_source: dict[str, list[str]] = defaultdict(list)
        for source, key in keys:
            by_source[source].append(key)
        c = t.events.c
        found: dict[tuple[str, str], tuple[str, str]] = {}
        for source, source_keys in by_source.items():
            for chunk in _chunks(source_keys):
                rows = self.conn.execute(
                    select(c.key, c.id, c.player_id).where(
                        c.tenant_id == tenant_id, c.source == source, c.key.in_(chunk)
                    )
                )
                for key, event_id, player_id in rows:
                    found[(source, key)] = (event_id, player_id)
        return found

    def get(self, tenant_id: str, event_id: str) -> StoredEvent | None:
        row = self.conn.execute(
            select(t.events).where(t.events.c.tenant_id == tenant_id, t.events.c.id == event_id)
        ).first()
        return _event(row._mapping) if row else None

    def after(self, position: int, limit: int) -> list[StoredEvent]:
        if self.conn.dialect.name == "sqlite":
            # On the driver's cursor: SQLAlchemy's row by row fetching cost ~3 µs an event.
            raw: Any = self.conn.connection.driver_connection
            return _sqlite_events(
                raw.execute(_AFTER_SQL, (position, _MAX_POSITION, limit)).fetchall()
            )
        c = t.events.c
        stmt = select(t.events).where(c.position > position).order_by(c.position).limit(limit)
        return [_event(r) for r in self.conn.execute(stmt).mappings()]

    def after_kept(
        self, position: int, limit: int, end: int | None, keep: Callable[[str, str], bool]
    ) -> tuple[list[StoredEvent], int, int]:
        kept, last, read = [], position, 0
        end = _MAX_POSITION if end is None else end
        if self.conn.dialect.name == "sqlite":
            raw: Any = self.conn.connection.driver_connection
            rows = raw.execute(_AFTER_SQL, (position, end, limit)).fetchall()
            if rows:
                last = rows[-1][0]
            return _sqlite_events(r for r in rows if keep(r[2], r[6])), last, len(rows)
        c = t.events.c
        stmt = (
            select(t.events)
            .where(c.position > position, c.position <= end)
            .order_by(c.position)
            .limit(limit)
        )
        for row in self.conn.execute(stmt).mappings():
            last = row["position"]
            read += 1
            if keep(row["tenant_id"], row["player_id"]):
                kept.append(_event(row))
        return kept, last, read

    def last_position(self) -> int:
        return int(self.conn.execute(select(func.max(t.events.c.position))).scalar() or 0)

    def in_partition(self, partition: int, position: int, limit: int) -> list[StoredEvent]:
        c = t.events.c
        stmt = (
            select(t.events)
            .where(c.partition == partition, c.position > position)
            .order_by(c.position)
            .limit(limit)
        )
        return [_event(r) for r in self.conn.execute(stmt).mappings()]

    def in_partitions(self, cursors: Mapping[int, int], limit: int) -> list[StoredEvent]:
        """Events of the given partitions after each one's cursor, in log order."""
        if not cursors:
            return []
        if self.conn.dialect.name == "postgresql":
            return events_in_partitions(self.conn, cursors, limit)
        c = t.events.c
        after = [and_(c.partition == p, c.position > position) for p, position in cursors.items()]
        stmt = select(t.events).where(or_(*after)).order_by(c.position).limit(limit)
        return [_event(r) for r in self.conn.execute(stmt).mappings()]

    def last_positions(self) -> dict[int, int]:
        """Each partition's last position: one index probe each (not a scan of the log), all
        in one statement (the sweepers ask every few seconds)."""
        c = t.events.c
        probes = [
            select(
                literal(partition).label("partition"),
                select(func.max(c.position))
                .where(c.partition == partition)
                .scalar_subquery()
                .label("last"),
            )
            for partition in range(PARTITIONS)
        ]
        rows = self.conn.execute(union_all(*probes)).all()
        return {int(partition): int(last) for partition, last in rows if last is not None}

    def types(self, tenant_id: str) -> set[str]:
        c = t.events.c
        return set(
            self.conn.execute(select(c.type).where(c.tenant_id == tenant_id).distinct()).scalars()
        )

    def query(self, tenant_id: str, query: EventQuery) -> list[StoredEvent]:
        c = t.events.c
        by_player = bool(query.player_ids)

        def term(column: Any) -> Any:  # by player, the log's tail is read by position
            return plain(self.conn, column) if by_player else column

        conditions = [c.position > query.after_position]
        if query.source is not None:
            conditions.append(term(c.source) == query.source)
        if query.type is not None:
            conditions.append(term(c.type) == query.type)
        if query.occurred_from is not None:
            conditions.append(term(c.occurred_at) >= query.occurred_from)
        if query.occurred_until is not None:
            conditions.append(term(c.occurred_at) < query.occurred_until)
        if not by_player:
            found = select(t.events).where(c.tenant_id == tenant_id, *conditions)
            rows = self.conn.execute(found.order_by(c.position).limit(query.limit)).mappings()
            return [_event(r) for r in rows]
        both = players_events(self.conn, tenant_id, query.player_ids, t.events, *conditions)
        rows = self.conn.execute(both.order_by("position").limit(query.limit)).mappings()
        return [_event(r) for r in rows]

    def index_players(self, limit: int) -> int:
        """Extend player_events over the next ``limit`` events of the log; how many (none on
        PostgreSQL, whose log is indexed by player as it is written)."""
        if not keeps_player_events(self.conn):
            return 0
        upto = _indexed_upto(self.conn)
        c = t.events.c
        rows = self.conn.execute(
            select(c.tenant_id, c.player_id, c.position)
            .where(c.position > upto)
            .order_by(c.position)
            .limit(limit)
        ).all()
        if not rows:
            return 0
        # Sorted by key: the B-tree is written page by page rather than at random.
        entries = sorted((tenant, player, position) for tenant, player, position in rows)
        # By hand: through SQLAlchemy's executemany, with a dict of parameters per row,
        # indexing took as much CPU as scoring.
        self.conn.exec_driver_sql(_INDEX_PLAYERS_SQL, entries)
        last = rows[-1][2]
        stmt = _insert(self.conn, t.cursors).values(name=PLAYER_INDEX, position=last)
        self.conn.execute(
            stmt.on_conflict_do_update(index_elements=[t.cursors.c.name], set_={"position": last})
        )
        return len(rows)

    def reassign_player(self, tenant_id: str, from_player: str, to_player: str) -> int:
        c = t.events.c
        if not keeps_player_events(self.conn):
            return int(
                self.conn.execute(
                    update(t.events)
                    .where(c.tenant_id == tenant_id, c.player_id == from_player)
                    .values(player_id=to_player)
                ).rowcount
            )
        pe = t.player_events.c
        upto = _indexed_upto(self.conn)
        positions = select(pe.position).where(
            pe.tenant_id == tenant_id, pe.player_id == from_player
        )
        moved = self.conn.execute(
            update(t.events)
            .where(plain(self.conn, c.tenant_id) == tenant_id, c.position.in_(positions))
            .values(player_id=to_player)
        ).rowcount
        moved += self.conn.execute(
            update(t.events)
            .where(c.position > upto, plain(self.conn, c.tenant_id) == tenant_id)
            .where(plain(self.conn, c.player_id) == from_player)
            .values(player_id=to_player)
        ).rowcount
        self.conn.execute(
            update(t.player_events)
            .where(pe.tenant_id == tenant_id, pe.player_id == from_player)
            .values(player_id=to_player)
        )
        return int(moved)

    def sources(self, tenant_id: str) -> list[tuple[str, int]]:
        c = t.events.c
        rows = self.conn.execute(
            select(c.source, func.count())
            .where(c.tenant_id == tenant_id)
            .group_by(c.source)
            .order_by(c.source)
        )
        return [(source, int(count)) for source, count in rows]


def keeps_player_events(conn: Connection) -> bool:
    """Whether the log's positions by player are kept in player_events (SQLite) rather than
    in an index of the log (PostgreSQL; tables.events)."""
    return conn.dialect.name == "sqlite"


def _indexed_upto(conn: Connection) -> int:
    """How far player_events covers the log."""
    return counter(conn, PLAYER_INDEX)


def players_events(
    conn: Connection, tenant_id: str, player_ids: Iterable[str], columns: Any, *conditions: Any
) -> Any:
    """The players' events (``columns`` of them, where ``conditions`` hold), unordered. On
    SQLite through player_events up to where it is kept, then the short tail of the log after
    it, so a read sees every committed event, indexed or not yet."""
    players = list(player_ids)
    c = t.events.c
    if not keeps_player_events(conn):
        return select(columns).where(
            c.tenant_id == tenant_id, c.player_id.in_(players), *conditions
        )
    upto = _indexed_upto(conn)
    pe = t.player_events.c
    indexed = (
        select(columns)
        .join(t.player_events, pe.position == c.position)
        .where(pe.tenant_id == tenant_id, pe.player_id.in_(players), pe.position <= upto)
        .where(*conditions)
    )
    tail = select(columns).where(
        c.position > upto,
        plain(conn, c.tenant_id) == tenant_id,
        plain(conn, c.player_id).in_(players),
        *conditions,
    )
    return union_all(indexed, tail)


def plain(conn: Connection, column: Any) -> Any:
    """``column`` as a term SQLite's planner looks up by no index (``+column``). Beside a range
    of positions (the log's short tail), a term on the tenant would otherwise win: without
    statistics SQLite deems an equality on an index more selective than a range, and would
    read every event of the tenant."""
    if conn.dialect.name != "sqlite":
        return column
    return UnaryExpression(column, operator=operators.custom_op("+"), type_=column.type)


class SqlSequences:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def runs_touching(self, tenant_id: str, source: str, first: int, last: int) -> list[Run]:
        c = t.sequence_runs.c
        rows = self.conn.execute(
            select(c.first, c.last)
            .where(
                c.tenant_id == tenant_id,
                c.source == source,
                c.first <= last + 1,
                c.last >= first - 1,
            )
            .order_by(c.first)
        )
        return [(int(a), int(b)) for a, b in rows]

    def replace_runs(
        self, tenant_id: str, source: str, removed: Sequence[Run], added: Sequence[Run]
    ) -> None:
        c = t.sequence_runs.c
        for first, _ in removed:
            self.conn.execute(
                delete(t.sequence_runs).where(
                    c.tenant_id == tenant_id, c.source == source, c.first == first
                )
            )
        if added:
            self.conn.execute(
                t.sequence_runs.insert(),
                [
                    {"tenant_id": tenant_id, "source": source, "first": a, "last": b}
                    for a, b in added
                ],
            )

    def all_runs(self, tenant_id: str, source: str) -> list[Run]:
        c = t.sequence_runs.c
        rows = self.conn.execute(
            select(c.first, c.last)
            .where(c.tenant_id == tenant_id, c.source == source)
            .order_by(c.first)
        )
        return [(int(a), int(b)) for a, b in rows]


class SqlIdempotency:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def get(self, tenant_id: str, key: str) -> IdempotencyRecord | None:
        c = t.idempotency_keys.c
        row = self.conn.execute(
            select(t.idempotency_keys).where(c.tenant_id == tenant_id, c.key == key)
        ).first()
        if row is None:
            return None
        return IdempotencyRecord(
            fingerprint=row.fingerprint,
            state=row.state,
            status_code=row.status_code,
            content_type=row.content_type,
            body=row.body,
            created_at=row.created_at,
            expires_at=row.expires_at,
        )

    def claim(
        self, tenant_id: str, key: str, fingerprint: str, now: datetime, expires_at: datetime
    ) -> bool:
        c = t.idempotency_keys.c
        result = self.conn.execute(
            _insert(self.conn, t.idempotency_keys)
            .values(
                tenant_id=tenant_id,
                key=key,
                fingerprint=fingerprint,
                state="in_flight",
                created_at=now,
                expires_at=expires_at,
            )
            .on_conflict_do_nothing(index_elements=[c.tenant_id, c.key])
        )
        return result.rowcount == 1

    def take_over(
        self,
        tenant_id: str,
        key: str,
        fingerprint: str,
        now: datetime,
        expires_at: datetime,
        stale_before: datetime,
    ) -> bool:
        c = t.idempotency_keys.c
        result = self.conn.execute(
            update(t.idempotency_keys)
            .where(
                c.tenant_id == tenant_id,
                c.key == key,
                (c.expires_at <= now) | ((c.state == "in_flight") & (c.created_at < stale_before)),
            )
            .values(
                fingerprint=fingerprint,
                state="in_flight",
                status_code=None,
                content_type=None,
                body=None,
                created_at=now,
                expires_at=expires_at,
            )
        )
        return result.rowcount == 1

    def complete(
        self, tenant_id: str, key: str, status_code: int, content_type: str, body: bytes
    ) -> None:
        c = t.idempotency_keys.c
        self.conn.execute(
            update(t.idempotency_keys)
            .where(c.tenant_id == tenant_id, c.key == key)
            .values(state="done", status_code=status_code, content_type=content_type, body=body)
        )

    def release(self, tenant_id: str, key: str) -> None:
        c = t.idempotency_keys.c
        self.conn.execute(
            delete(t.idempotency_keys).where(
                c.tenant_id == tenant_id, c.key == key, c.state == "in_flight"
            )
        )

    def purge_expired(self, now: datetime) -> int:
        result = self.conn.execute(
            delete(t.idempotency_keys).where(t.idempotency_keys.c.expires_at <= now)
        )
        return result.rowcount
