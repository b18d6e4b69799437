"""Engine set-up and units of work over SQLAlchemy Core."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, create_engine, event, make_url, text
from sqlalchemy.exc import DisconnectionError

from plaudit.errors import Contended
from plaudit.store.ports import (
    ApiKeyRepository,
    AuditRepository,
    BadgeRepository,
    BoardRepository,
    EventRepository,
    HoldRepository,
    IdempotencyRepository,
    OutboxRepository,
    PlayerRepository,
    RuleSetRepository,
    ScoringRepository,
    SequenceRepository,
    TenantRepository,
    WebhookRepository,
)
from plaudit.store.sql.audit import SqlAudit
from plaudit.store.sql.badges import SqlBadges
from plaudit.store.sql.boards import SqlBoards
from plaudit.store.sql.errors import lost_a_race
from plaudit.store.sql.holds import SqlHolds
from plaudit.store.sql.postgres import forget_staging
from plaudit.store.sql.repositories import (
    SqlApiKeys,
    SqlEvents,
    SqlIdempotency,
    SqlPlayers,
    SqlSequences,
    SqlTenants,
)
from plaudit.store.sql.scoring import SqlRuleSets, SqlScoring
from plaudit.store.sql.webhooks import SqlOutbox, SqlWebhooks

_IMMEDIATE = "plaudit_immediate"
log = logging.getLogger("plaudit.store")


def _json_dumps(value: Any) -> str:
    return orjson.dumps(value).decode("utf-8")


class SqlUnitOfWork:
    """Repositories sharing one connection and one transaction."""

    def __init__(self, conn: Connection, writing: bool = False) -> None:
        self.conn = conn
        self.tenants: TenantRepository = SqlTenants(conn)
        self.keys: ApiKeyRepository = SqlApiKeys(conn)
        self.players: PlayerRepository = SqlPlayers(conn)
        self.events: EventRepository = SqlEvents(conn)
        self.sequences: SequenceRepository = SqlSequences(conn)
        self.idempotency: IdempotencyRepository = SqlIdempotency(conn)
        self.rulesets: RuleSetRepository = SqlRuleSets(conn, writing)
        self.badges: BadgeRepository = SqlBadges(conn)
        self.scoring: ScoringRepository = SqlScoring(conn, writing)
        self._boards = SqlBoards(conn)
        self.boards: BoardRepository = self._boards
        self.outbox: OutboxRepository = SqlOutbox(conn)
        self.audit: AuditRepository = SqlAudit(conn)
        self.holds: HoldRepository = SqlHolds(conn, writing)
        self.webhooks: WebhookRepository = SqlWebhooks(conn)
        self.committed = False

    def commit(self) -> None:
        self._boards.flush()  # what is numbered in commit order goes last (tail lock)
        self.conn.commit()
        self.committed = True

    def end_snapshot(self) -> None:
        if self.conn.in_transaction():
            self.conn.rollback()


class SqlDatabase:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.is_sqlite = engine.dialect.name == "sqlite"
        # SQLite has one writer at a time; queueing writers here (rather than in SQLite's
        # busy loop) keeps latency fair and avoids SQLITE_BUSY under load. PostgreSQL takes
        # concurrent writers: they lock what they touch (rows, advisory locks) themselves.
        self._write_lock: threading.Lock | contextlib.nullcontext[None] = (
            threading.Lock() if self.is_sqlite else contextlib.nullcontext()
        )

    @contextmanager
    def write(self, durable: bool = True, foreign_keys: bool = True) -> Iterator[SqlUnitOfWork]:
        """A write transaction. ``durable=False`` is for bookkeeping that may be lost in a
        power cut (not in a process crash) because redoing it is harmless, e.g. a webhook
        dispatcher's claims: its commit does not wait for the disk, and holds the write lock
        that much less. A later durable commit makes it durable too (one WAL, in order).

        ``foreign_keys=False`` is for a transaction that only deletes rows referring to others
        (a full replay emptying derived tables): SQLite checks no references in it, which
        lets a DELETE without WHERE drop a table's pages at once (with the checks it deletes
        row by row: 3 s against 0.4 s for 1,000,000 ledger rows, measured here)."""
        with self._write_lock, self.engine.connect() as conn:
            relaxed = not durable and self.is_sqlite
            unchecked = not foreign_keys and self.is_sqlite
            # On the driver's connection: through SQLAlchemy it would start a transaction, in
            # which SQLite refuses to change these settings.
            raw: Any = conn.connection.driver_connection
            if relaxed:
                raw.execute("PRAGMA synchronous=NORMAL")
            if unchecked:
                raw.execute("PRAGMA foreign_keys=OFF")
            try:
                conn.execution_options(**{_IMMEDIATE: True})
                conn.begin()
                if not durable and not self.is_sqlite:
                    conn.exec_driver_sql("SET LOCAL synchronous_commit TO OFF")
                uow = SqlUnitOfWork(conn, writing=True)
                try:
                    yield uow
                except Exception as exc:
                    # The races concurrent writers lose (PostgreSQL): a domain error that
                    # says nothing was written, for callers to retry or report as 409.
                    if lost_a_race(exc):
                        log.info("a transaction lost a race: %s", getattr(exc, "orig", exc))
                        raise Contended() from exc
                    raise
                finally:
                    if not uow.committed:
                        conn.rollback()
                        if not self.is_sqlite:
                            forget_staging(conn.connection.info)
            finally:
                if relaxed:
                    raw.execute("PRAGMA synchronous=FULL")
                if unchecked:
                    raw.execute("PRAGMA foreign_keys=ON")

    @contextmanager
    def read(self) -> Iterator[SqlUnitOfWork]:
        # A read transaction sees one snapshot; closing the connection ends it.
        with self.engine.connect() as conn:
            conn.begin()
            yield SqlUnitOfWork(conn)

    def ping(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    def close(self) -> None:
        self.engine.dispose()

    def opener(self) -> tuple[Callable[[str], SqlDatabase], str] | None:
        url = self.engine.url
        if self.is_sqlite and url.database in (None, "", ":memory:"):
            return None
        return create_database, url.render_as_string(hide_password=False)


def engine_url(url: str) -> str:
    """The SQLAlchemy URL of a database URL as users write it: PostgreSQL through psycopg 3."""
    for plain in ("postgresql://", "postgres://"):
        if url.startswith(plain):
            return "postgresql+psycopg://" + url[len(plain) :]
    return url


def create_database(url: str, pool_size: int = 8) -> SqlDatabase:
    parsed = make_url(engine_url(url))
    backend = parsed.get_backend_name()
    if backend == "postgresql":
        if parsed.get_driver_name() != "psycopg":
            raise ValueError(f"use postgresql:// (psycopg 3), not {parsed.drivername!r}")
        engine = create_engine(
            parsed,
            json_serializer=_json_dumps,
            json_deserializer=orjson.loads,
            pool_size=pool_size,
            max_overflow=pool_size * 2,
            # psycopg forgets an INSERT's rowcount once SQLAlchemy closes the cursor (sqlite3
            # keeps it): keep it, since "did ON CONFLICT DO NOTHING insert?" is asked by it.
            execution_options={"preserve_rowcount": True},
            connect_args={
                "connect_timeout": 5,
                "application_name": "plaudit",
                # Never prepared: every statement is planned for its own parameters. psycopg
                # prepares a statement run 5 times on a connection, and after 5 more
                # PostgreSQL may keep one generic plan for any parameters. The scale-out
                # scorer's read ("partition = $1 AND position > $2 OR ...") planned that
                # way reads the log by position from its start: 110 ms a step on a log of
                # 400,000 events, against 0.07 ms planned for the cursors at hand, and worse
                # as the log grows. Whether a statement got that far was chance (a read-only
                # transaction's rollback makes psycopg forget what it prepared), so planning
                # each time costs little more than before.
                "prepare_threshold": None,
            },
        )
        _configure_postgres(engine)
        return SqlDatabase(engine)
    if backend != "sqlite":
        raise ValueError(f"unsupported database backend {backend!r}")
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        url,
        json_serializer=_json_dumps,
        json_deserializer=orjson.loads,
        pool_size=8,
        max_overflow=32,
    )
    _configure_sqlite(engine)
    return SqlDatabase(engine)


# A pooled connection idle longer than this is tried before it is handed out (a server
# restarted meanwhile left it dead: it is replaced). One used more recently is handed out as
# it is: trying every one (SQLAlchemy's pool_pre_ping) was a round trip more for every
# transaction, some 420 a second at 5,000 events/s (one of a scoring step's 24 round trips,
# of an ingestion request's 7 - 8).
# A server restarted within that second fails the transactions of such connections (as it
# fails those under way); SQLAlchemy, seeing a disconnect, then renews its whole pool.
PING_IDLE = 1.0
_IDLE_SINCE = "plaudit_idle_since"


def _configure_postgres(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Times come back in UTC whatever the server's zone: psycopg then gives them
        # datetime.timezone.utc, which the readers' astimezone(UTC) keeps as is (with the
        # server's Etc/UTC they were converted, twice per event the scorer reads).
        dbapi_conn.execute("SET TIME ZONE 'UTC'")
        dbapi_conn.commit()

    @event.listens_for(engine, "checkin")
    def _on_checkin(_dbapi_conn: Any, record: Any) -> None:
        record.info[_IDLE_SINCE] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.get(_IDLE_SINCE)
        if idle_since is None or time.monotonic() - idle_since < PING_IDLE:
            return  # new, or used a moment ago
        try:
            engine.dialect.do_ping(dbapi_conn)
        except Exception as exc:
            # The pool drops this connection and hands out another (a new one if need be).
            raise DisconnectionError(str(exc)) from exc


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event emit BEGIN itself (pysqlite's own handling
        # defers it and breaks BEGIN IMMEDIATE).
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        # FULL: a commit is on disk (the WAL is fsynced) before the API acknowledges.
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get(_IMMEDIATE, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")
