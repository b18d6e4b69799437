"""PostgreSQL fast paths. The event log's append is the hot path of ingestion: psycopg's
COPY takes the rows (PostgreSQL's cheapest way in: about 72,000 rows/s here against 45,000
for executemany, and SQLAlchemy's multi-row INSERT spent most of its time parsing its own
statement) straight into the log under a savepoint; when a key is logged already, back to
the savepoint, into a temporary table, and one INSERT … SELECT … ON CONFLICT DO NOTHING
appends them, so the unique constraint still decides what is a duplicate."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import Connection

from plaudit.domain.events import StoredEvent
from plaudit.domain.partitions import partition_of
from plaudit.store.ports import NewEventRow

# The log's columns as both stores' appends write them (SQLite's by hand in repositories.py).
EVENT_COLUMNS = (
    "id, tenant_id, source, key, type, player_id, actor, occurred_at, received_at, "
    "properties, sequence, partition"
)
_COLUMNS = EVENT_COLUMNS
# A staging table is emptied by the statement that takes its rows (and a transaction that
# fails rolls back what it staged): not ON COMMIT DELETE ROWS, which truncates the table's
# file at every commit of the connection (IO:DataFileTruncate, seen in every commit's wait).
_STAGING = (
    "CREATE TEMPORARY TABLE IF NOT EXISTS events_staged ("
    " ord integer, id varchar(40), tenant_id varchar(64), source varchar(64),"
    " key varchar(255), type varchar(128), player_id varchar(40), actor varchar(255),"
    " occurred_at timestamptz, received_at timestamptz, properties json, sequence bigint,"
    " partition smallint)"
)
# The staged rows are taken out as they go in: a group commit appends several requests in one
# transaction, and rows left staged were tried again by every later append of the group (as
# duplicates of themselves: more work at each, and a sequence number each).
_APPEND = (
    f"WITH staged AS (DELETE FROM events_staged RETURNING ord, {_COLUMNS}) "  # noqa: S608 - constants only
    f"INSERT INTO events ({_COLUMNS}) SELECT {_COLUMNS} FROM staged ORDER BY ord "
    "ON CONFLICT (tenant_id, source, key) DO NOTHING RETURNING source, key"
)
_READY = "plaudit_events_staged"
_PAUSE = "plaudit_log_straight_pause"  # appends left to take the staging way
# After an append met a logged key, this many of the connection's next appends take the
# staging way: a client that retries sends its batches' events again, one batch after another.
_STRAIGHT_PAUSE = 32
_MADE = "plaudit_staged"  # the copy_insert staging tables made on the connection
# Rows staged per staging table since it was last truncated (the connection's).
_STAGED_ROWS = "plaudit_staged_rows"
# A staging table is emptied by DELETE, which leaves its rows dead in the file: autovacuum
# never visits temporary tables, and inserts only reuse space that VACUUM has recorded, so
# the file grew with every use for the connection's lifetime, and each DELETE scanned all
# of it. bench/staging.py: 100-row upserts by way of staging took 1.4 ms of PostgreSQL's CPU
# on a new connection, 11 ms after 3,000 (820 pages more every 500). After this many rows a
# table is truncated before its next COPY: a new empty file, once per this many rows (a
# TRUNCATE at every commit, as ON COMMIT DELETE ROWS does, cost a file truncation each).
_TRUNCATE_AFTER = 20_000


class TimeText:
    """Times as COPY's text, each formatted once per write. psycopg's text dumper of a
    datetime took about 4 µs a value here (``isoformat`` 2.8, a cached one 0.06: `python -m
    timeit` with the machine at half speed); a ledger row took 10.8 µs to format with its two
    times as datetimes, 2.3 with everything as text. A write's ledger rows share few times
    (the time recorded; the same event's time, one object, for each of its entries). Not
    for times that seldom repeat: hashing a new aware datetime costs a third of formatting
    it."""

    __slots__ = ("_texts",)

    def __init__(self) -> None:
        self._texts: dict[datetime, str] = {}

    def __call__(self, value: datetime) -> str:
        text = self._texts.get(value)
        if text is None:
            text = self._texts[value] = value.isoformat()
        return text


def forget_staging(info: dict[Any, Any]) -> None:
    """A transaction rolled back: the staging tables it made are gone with it, so the next
    one on the connection makes them again (``info``: the pooled connection's)."""
    info.pop(_READY, None)
    info.pop(_MADE, None)
    # Rolled back with it: a TRUNCATE; a table made there is gone.
    info.pop(_STAGED_ROWS, None)


def _reclaim(cur: Any, info: dict[Any, Any], table: str, rows: int) -> None:
    """Before staging ``rows`` rows in ``table``: truncate it when the rows it has taken
    since its last truncation (all dead by now) reach ``_TRUNCATE_AFTER``."""
    staged: dict[str, int] = info.setdefault(_STAGED_ROWS, {})
    total = staged.get(table, 0)
    if total >= _TRUNCATE_AFTER:
        cur.execute(f"TRUNCATE {table}")
        total = 0
    staged[table] = total + rows


def event_values(
    tenant_id: str, r: NewEventRow, occurred_at: object, received_at: object
) -> tuple[Any, ...]:
    """A log row's values in ``EVENT_COLUMNS`` order, its two times as the caller renders
    them (datetimes for COPY, text for SQLite)."""
    return (
        r.id,
        tenant_id,
        r.source,
        r.key,
        r.type,
        r.player_id,
        r.actor,
        occurred_at,
        received_at,
        orjson.dumps(r.properties).decode(),
        r.sequence,
        partition_of(tenant_id, r.player_id),
    )


def append_events(
    conn: Connection,
    tenant_id: str,
    batches: Sequence[tuple[Sequence[NewEventRow], datetime]],
    lock: str,
) -> list[tuple[str, str]]:
    """Append several requests' rows (each with its time received) to the log, in order;
    (source, key) of those that got in (the others were logged already: duplicates).
    ``lock``, a statement without parameters, takes the log's lock, held to the commit (rows
    are numbered from there); straight in, it goes in one round trip with the savepoint.

    Straight in: COPY into the log under a savepoint. INSERT … ON CONFLICT DO NOTHING costs
    PostgreSQL a speculative insertion per row, and the rows a trip through a staging table:
    1,000 events took 5 ms to stage and 33 to 37 ms to move, against 23 ms for the COPY
    straight in (no other load). When a key is there already the COPY fails whole: back to
    the savepoint and the staging way, where the unique constraint picks the duplicates."""
    # Each event's own time formatted as it comes (they seldom repeat, and hashing an aware
    # datetime costs a third of formatting it); a request's time received once.
    values = []
    for rows, received_at in batches:
        received = received_at.isoformat()
        values += [event_values(tenant_id, r, r.occurred_at.isoformat(), received) for r in rows]
    if not values:
        return []
    info = conn.connection.info
    if info.get(_PAUSE, 0) == 0:
        if copy_straight(conn, "events", _COLUMNS, values, first=lock):
            return [(v[2], v[3]) for v in values]
        info[_PAUSE] = _STRAIGHT_PAUSE  # the lock is held: taken before the savepoint
        _stage(conn, values)
    else:
        info[_PAUSE] -= 1
        _stage(conn, values)  # unlocked: the lock is taken for the append only
        fetch(conn, lock)
    raw: Any = conn.connection.driver_connection
    with raw.cursor() as cur:
        cur.execute(_APPEND)
        return [(source, key) for source, key in cur.fetchall()]


def _stage(conn: Connection, values: Sequence[tuple[Any, ...]]) -> None:
    """COPY log rows into this transaction's staging table, numbered in order."""
    raw: Any = conn.connection.driver_connection
    info = conn.connection.info
    with raw.cursor() as cur:
        if not info.get(_READY):
            cur.execute(_STAGING)
            info[_READY] = True
        _reclaim(cur, info, "events_staged", len(values))
        with cur.copy(f"COPY events_staged (ord, {_COLUMNS}) FROM STDIN") as copy:
            for ord_, row in enumerate(values):
                copy.write_row((ord_, *row))


def fetch(
    conn: Connection, sql: str, params: Sequence[Any] = (), first: str = ""
) -> list[tuple[Any, ...]]:
    """One statement's rows, run straight on the transaction's psycopg connection: for the
    small statements a scoring step runs whatever its size (lock the cursors, look up
    states and retractions, number the board changes, move the cursors). Through
    SQLAlchemy's Core each took 0.6 to 1 ms of CPU (building the statement, its cache key,
    the execution context and result), on psycopg 0.15; with a dozen a step, that was most
    of what a step of a few events cost.

    ``first``: a statement without parameters run before it, in the same round trip. The
    two go in one message of the simple query protocol, the parameters bound on the client
    (psycopg's ``ClientCursor``): the extended protocol takes one statement a message."""
    raw: Any = conn.connection.driver_connection
    if first:
        from psycopg import ClientCursor  # noqa: PLC0415 - as in copy_straight

        with ClientCursor(raw) as cur:
            cur.execute(f"{first}; {sql}", params)
            cur.nextset()
            return cur.fetchall() if cur.description is not None else []
    cur = raw.execute(sql, params)
    return cur.fetchall() if cur.description is not None else []


def copy_straight(
    conn: Connection, table: str, names: str, rows: Sequence[Sequence[Any]], first: str = ""
) -> bool:
    """COPY rows straight into ``table`` under a savepoint; False, with nothing written and
    the transaction going on, when a row's key is there already. ``first``: a statement
    without parameters run before the savepoint, in the same round trip (PostgreSQL's
    simple query protocol takes several statements in one message; with parameters,
    psycopg's extended protocol takes one)."""
    # Here, not at the top: the embedded mode imports this module and never needs it.
    from psycopg.errors import UniqueViolation  # noqa: PLC0415

    raw: Any = conn.connection.driver_connection
    with raw.cursor() as cur:
        cur.execute(f"{first}; SAVEPOINT plaudit_copy" if first else "SAVEPOINT plaudit_copy")
        try:
            with cur.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        except UniqueViolation:
            cur.execute("ROLLBACK TO SAVEPOINT plaudit_copy")
            return False
        # Not released: the commit ends it with the transaction, and a RELEASE was one more
        # round trip (a scoring step COPYs twice this way; ingestion once, holding the log's
        # lock). A later savepoint of the same name nests inside it, and a rollback to that
        # name goes back to the latest.
        return True


def copy_insert(
    conn: Connection,
    table: str,
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
    conflict: str = "ON CONFLICT DO NOTHING",
    *,
    rarely_conflict: bool = False,
) -> int:
    """INSERT many rows by way of COPY: the scoring worker's bulk writes (ledger, board
    entries, states, outbox). SQLAlchemy's executemany sent them at about 18,000 rows/s;
    COPY into a staging table and one INSERT … SELECT … ``conflict`` does several times
    that, with the same conflict handling. Values are the column's Python values (JSON as
    text). Returns the number of rows inserted or updated.

    ``rarely_conflict`` (rows whose key is new but for a redelivery: ledger entries, board
    entries): COPY straight into the table, under a savepoint; only when a row's key is
    there already, back to the savepoint and the staging way. Straight in, those rows took
    about half of PostgreSQL's sampled time the staging way took (bench/pg_sample.py beside
    bench/e2e.py: ledger 9.9 → 5.3 %, board entries 5.0 → 2.3 %)."""
    raw: Any = conn.connection.driver_connection
    names = ", ".join(f'"{column}"' for column in columns)  # "window" is a keyword
    rows = rows if isinstance(rows, Sequence) else list(rows)  # counted; maybe read again
    if rarely_conflict and copy_straight(conn, table, names, rows):
        return len(rows)
    info = conn.connection.info
    made: set[str] = info.setdefault(_MADE, set())
    staged = f"staged_{table}"
    with raw.cursor() as cur:
        if staged not in made:
            # The columns' types, without their constraints or defaults.
            create = f"CREATE TEMPORARY TABLE IF NOT EXISTS {staged} AS "
            cur.execute(create + f"SELECT {names} FROM {table} WITH NO DATA")  # noqa: S608
            made.add(staged)
        _reclaim(cur, info, staged, len(rows))
        with cur.copy(f"COPY {staged} ({names}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        # The rows are taken out of the staging table as they go in (for a second call in
        # the transaction): one statement, one round trip fewer than a DELETE after it, and
        # a scoring step makes four such calls.
        cur.execute(
            f"WITH moved AS (DELETE FROM {staged} RETURNING {names}) "  # noqa: S608 - ours
            f"INSERT INTO {table} ({names}) SELECT {names} FROM moved {conflict}"
        )
        return int(cur.rowcount)


_EVENT_COLUMNS = (
    "position, id, tenant_id, source, key, type, player_id, actor, occurred_at, received_at, "
    "properties::text, sequence, partition"
)


def stored_event(r: Sequence[Any], occurred_at: datetime, received_at: datetime) -> StoredEvent:
    """A log row read as ``position, EVENT_COLUMNS`` (properties as JSON text) by either
    store's hand-written read; its two times as that store's driver gives them, made aware."""
    # Positional (position, id, tenant, source, key, type, player, actor, two times,
    # properties, sequence, partition): by keyword 2.8 µs an event, this way 0.9.
    return StoredEvent(
        r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7],
        occurred_at, received_at, orjson.loads(r[10]), r[11], r[12],
    )  # fmt: skip


def events_in_partitions(
    conn: Connection, cursors: Mapping[int, int], limit: int
) -> list[StoredEvent]:
    """The scale-out scorer's read: events of some partitions after each one's cursor, in log
    order. Rows as tuples and the properties parsed by orjson: through SQLAlchemy's row
    mappings this read cost about 15 µs per event, a tenth of a worker's time per event."""
    raw: Any = conn.connection.driver_connection
    after = " OR ".join(["(partition = %s AND position > %s)"] * len(cursors))
    params: list[int] = [value for item in cursors.items() for value in item]
    sql = f"SELECT {_EVENT_COLUMNS} FROM events WHERE {after} ORDER BY position LIMIT %s"  # noqa: S608 - placeholders only
    with raw.cursor() as cur:
        cur.execute(sql, [*params, limit])
        rows = cur.fetchall()
    return [stored_event(r, r[8].astimezone(UTC), r[9].astimezone(UTC)) for r in rows]
