"""Leaderboard scores in SQL: per-event entries, per-window totals, and the change sequence."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Connection,
    and_,
    delete,
    false,
    func,
    or_,
    select,
    true,
    tuple_,
    union_all,
    update,
)

from plaudit.store.ports import BoardEntryRow, BoardScoreRow
from plaudit.store.sql import tables as t
from plaudit.store.sql.postgres import copy_insert, fetch
from plaudit.store.sql.repositories import (
    TAIL_LOCK,
    _chunks,
    _insert,
    counter,
    delete_rows,
    players_events,
    serialized_bump,
)

SEQ = "board-seq"
# PostgreSQL's NOTIFY channel: a transaction that numbers board changes tells its listeners
# (the projector) when it commits.
BOARD_CHANGES = "plaudit_board_changes"

_ADD_SQLITE = (
    "INSERT INTO board_scores (tenant_id, board_id, window, subject, units, reached_us, entries, "
    "seq) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (tenant_id, board_id, window, subject) "
    "DO UPDATE SET units = units + excluded.units, entries = entries + excluded.entries, "
    "reached_us = max(reached_us, excluded.reached_us), seq = excluded.seq"
)
_ENTRIES_SQLITE = (
    "INSERT INTO board_entries (tenant_id, ref, board_id, window, subject, units, reached_us, "
    "by_subject) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"
)

# An entry's columns: the tenant, then the row's fields in order.
_ENTRY_COLUMNS = ("tenant_id", *BoardEntryRow._fields)
_SCORE_COLUMNS = BoardScoreRow._fields  # the table's columns, in its order (checked by a test)
# Quoted: "window" is a keyword.
_SCORE_LIST = ", ".join(f'"{column}"' for column in _SCORE_COLUMNS)
_CHANGED_PG = f"SELECT {_SCORE_LIST} FROM board_scores WHERE seq > %s ORDER BY seq"  # noqa: S608 - constants only
_CHANGED_FEW = 5000
_CHANGED_FEW_PG = _CHANGED_PG + " LIMIT %s + 1"
_CHANGED_FROM_PG = f"SELECT {_SCORE_LIST} FROM board_scores WHERE seq >= %s ORDER BY seq"  # noqa: S608 - constants only
# What changed is read by the seq index, always (for the sync's transaction). Left to the
# planner it was a scan of the whole table and a sort whenever it guessed that many rows
# match: without statistics (a new database, before autovacuum's first analyze) it takes a
# third of the rows, where a sync finds a few transactions' changes. And the table is mostly
# dead rows between autovacuum's visits: each change of a score leaves its old row behind
# (seq is indexed, so no update is HOT).
# A scan's cost grows with the boards, a sync's changes do not (docs/architecture.md).
_BY_SEQ_PG = "SET LOCAL enable_seqscan TO off"
_SEQ_AT = _SCORE_COLUMNS.index("seq")
_PG_CONFLICT = 'ON CONFLICT (tenant_id, board_id, "window", subject) DO UPDATE SET '
_PG_ADD = _PG_CONFLICT + (
    "units = board_scores.units + excluded.units, "
    "entries = board_scores.entries + excluded.entries, "
    "reached_us = greatest(board_scores.reached_us, excluded.reached_us), seq = excluded.seq"
)
_PG_SET = _PG_CONFLICT + (
    "units = excluded.units, entries = excluded.entries, reached_us = excluded.reached_us, "
    "seq = excluded.seq"
)

_Key = tuple[str, str, str]  # (board, window, subject)
_Total = tuple[int, int, int]  # (units, latest reached_us, entries)


def _row(r: Any) -> BoardScoreRow:
    """A ``board_scores`` row read whole, by position (the projector reads every changed
    one; by name, SQLAlchemy's row took a lookup per column). The table's columns are in
    the fields' order (tests/contract/test_board_standings.py checks it)."""
    return BoardScoreRow(*r)


class SqlBoards:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self._seq: int | None = None
        # Totals added by this transaction, written at its end (flush): on PostgreSQL the tail
        # lock that numbers them is then held from there to the commit only.
        self._pending: dict[str, dict[_Key, _Total]] = {}

    def flush(self) -> None:
        """Write the pending totals (at commit, and before anything else touches scores)."""
        if not self._pending:
            return
        pending, self._pending = self._pending, {}
        seq = self._next_seq()
        for tenant_id, totals in pending.items():
            if self.conn.dialect.name == "sqlite":
                # By hand, as the ledger: scoring writes these for most events.
                self.conn.exec_driver_sql(
                    _ADD_SQLITE,
                    [(tenant_id, *key, u, r, n, seq) for key, (u, r, n) in totals.items()],
                )
            else:
                self._upsert(tenant_id, totals, seq, add=True)

    def _next_seq(self) -> int:
        """One sequence number per transaction (writers are serialized)."""
        if self._seq is None:
            self._seq = serialized_bump(self.conn, TAIL_LOCK, BOARD_CHANGES, SEQ)
        return self._seq

    def add_entries(self, tenant_id: str, entries: Sequence[BoardEntryRow]) -> None:
        """The entries now; their totals at the end of the transaction (``flush``)."""
        if not entries:
            return
        self._insert_entries(tenant_id, entries)  # not numbered: no lock needed
        pending = self._pending.setdefault(tenant_id, {})
        for e in entries:
            key = (e.board_id, e.window, e.subject)
            units, reached, count = pending.get(key, (0, 0, 0))
            pending[key] = (units + e.units, max(reached, e.reached_us), count + 1)

    def _insert_entries(self, tenant_id: str, entries: Sequence[BoardEntryRow]) -> None:
        if self.conn.dialect.name == "sqlite":
            self.conn.exec_driver_sql(_ENTRIES_SQLITE, [(tenant_id, *e) for e in entries])
            return
        copy_insert(
            self.conn,
            "board_entries",
            _ENTRY_COLUMNS,
            ((tenant_id, *e) for e in entries),
            rarely_conflict=True,
        )

    def _upsert(self, tenant_id: str, totals: dict[_Key, _Total], seq: int, *, add: bool) -> None:
        if self.conn.dialect.name == "postgresql":
            copy_insert(
                self.conn,
                "board_scores",
                _SCORE_COLUMNS,
                ((tenant_id, b, w, s, u, r, n, seq) for (b, w, s), (u, r, n) in totals.items()),
                _PG_ADD if add else _PG_SET,
            )
            return
        c = t.board_scores.c
        stmt = _insert(self.conn, t.board_scores)
        ex = stmt.excluded
        stmt = stmt.on_conflict_do_update(
            index_elements=[c.tenant_id, c.board_id, c.window, c.subject],
            set_={
                "units": c.units + ex.units if add else ex.units,
                "entries": c.entries + ex.entries if add else ex.entries,
                "reached_us": func.max(c.reached_us, ex.reached_us) if add else ex.reached_us,
                "seq": ex.seq,
            },
        )
        self.conn.execute(
            stmt,
            [
                {
                    "tenant_id": tenant_id,
                    "board_id": b,
                    "window": w,
                    "subject": s,
                    "units": u,
                    "reached_us": r,
                    "entries": n,
                    "seq": seq,
                }
                for (b, w, s), (u, r, n) in totals.items()
            ],
        )

    def _sums(
        self, tenant_id: str, where: Any, subjects: set[str] | None = None
    ) -> dict[_Key, _Total]:
        """(units, latest reached_us, entries) per board, window and subject, from entries
        (of ``subjects`` only, when given: found by them rather than by a scan)."""
        if subjects is None:
            tenants = t.board_entries.c.tenant_id == tenant_id
            found = select(t.board_entries).where(tenants, where).subquery()
        else:
            found = self._subjects_entries(tenant_id, subjects, where).subquery()
        e = found.c
        rows = self.conn.execute(
            select(e.board_id, e.window, e.subject, func.sum(e.units), func.max(e.reached_us))
            .add_columns(func.count())
            .group_by(e.board_id, e.window, e.subject)
        )
        return {(b, w, s): (int(u), int(r), int(n)) for b, w, s, u, r, n in rows}

    def _recompute(self, tenant_id: str, keys: set[_Key]) -> None:
        """Set the scores of ``keys`` to the sum of their remaining entries (0 if none)."""
        if not keys:
            return
        e = t.board_entries.c
        totals: dict[_Key, _Total] = dict.fromkeys(keys, (0, 0, 0))
        for chunk in _chunks(sorted(keys), 300):
            keyed = tuple_(e.board_id, e.window, e.subject).in_(list(chunk))
            totals.update(self._sums(tenant_id, keyed, {s for _, _, s in chunk}))
        self._upsert(tenant_id, totals, self._next_seq(), add=False)

    def _subjects_entries(self, tenant_id: str, subjects: set[str], *where: Any) -> Any:
        """``select`` of the entries of ``subjects`` (where ``where`` holds). PostgreSQL: those
        found through the subjects' events (as players), and those indexed by subject."""
        e = t.board_entries.c
        mine = (e.tenant_id == tenant_id, e.subject.in_(sorted(subjects)), *where)
        if self.conn.dialect.name == "sqlite":  # indexed by subject, all of them
            return select(t.board_entries).where(*mine)
        events = players_events(self.conn, tenant_id, sorted(subjects), t.events.c.id)
        return union_all(
            select(t.board_entries).where(*mine, e.by_subject == false(), e.ref.in_(events)),
            select(t.board_entries).where(*mine, e.by_subject == true()),
        )

    def remove_entries(self, tenant_id: str, ref: str) -> list[BoardEntryRow]:
        self.flush()
        e = t.board_entries.c
        rows = [
            BoardEntryRow(
                r.ref, r.board_id, r.window, r.subject, r.units, r.reached_us, r.by_subject
            )
            for r in self.conn.execute(
                select(t.board_entries).where(e.tenant_id == tenant_id, e.ref == ref)
            )
        ]
        if rows:
            self.conn.execute(delete(t.board_entries).where(e.tenant_id == tenant_id, e.ref == ref))
            self._recompute(tenant_id, {(r.board_id, r.window, r.subject) for r in rows})
        return rows

    def replace_event_entries(self, tenant_id: str, entries: Sequence[BoardEntryRow]) -> None:
        self.flush()
        e = t.board_entries.c
        self.conn.execute(
            delete(t.board_entries).where(e.tenant_id == tenant_id, ~e.ref.startswith("adj_"))
        )
        for chunk in _chunks(list(entries), 5000):
            self._insert_entries(tenant_id, chunk)
        # Every score again from the entries; subjects left with none get a zero row.
        c = t.board_scores.c
        existing = self.conn.execute(
            select(c.board_id, c.window, c.subject).where(c.tenant_id == tenant_id)
        )
        totals: dict[_Key, _Total] = {(b, w, s): (0, 0, 0) for b, w, s in existing}
        totals.update(self._sums(tenant_id, true()))
        if totals:
            self._upsert(tenant_id, totals, self._next_seq(), add=False)

    def move_subject(self, tenant_id: str, from_subject: str, to_subject: str) -> None:
        """After a merge (the events moved to ``to_subject`` already): the entries of
        ``from_subject`` become ``to_subject``'s."""
        self.flush()
        e = t.board_entries.c
        theirs = (e.tenant_id == tenant_id, e.subject == from_subject)
        paths: tuple[Any, ...] = (true(),)  # SQLite: indexed by subject, all of them
        if self.conn.dialect.name != "sqlite":
            events = players_events(self.conn, tenant_id, [from_subject, to_subject], t.events.c.id)
            paths = (and_(e.by_subject == false(), e.ref.in_(events)), e.by_subject == true())
        keys: set[tuple[str, str]] = set()
        for which in paths:
            keys |= {
                (b, w)
                for b, w in self.conn.execute(
                    select(e.board_id, e.window).where(*theirs, which).distinct()
                )
            }
        if not keys:
            return
        for which in paths:
            self.conn.execute(
                update(t.board_entries).where(*theirs, which).values(subject=to_subject)
            )
        self._recompute(
            tenant_id,
            {(b, w, s) for b, w in keys for s in (from_subject, to_subject)},
        )

    def changed_since(self, seq: int) -> Iterator[BoardScoreRow]:
        self.flush()
        if self.conn.dialect.name == "postgresql":  # the projector's every sync: on psycopg
            raw: Any = self.conn.connection.driver_connection
            # What one sync finds is a few transactions' changes: one statement. A server-side
            # cursor (declare, fetch, close: three round trips, ~18 % of a sync's py-spy
            # samples at 5,000 events/s) only when they are many, after an outage.
            rows = fetch(self.conn, _CHANGED_FEW_PG, (seq, _CHANGED_FEW), first=_BY_SEQ_PG)
            if len(rows) <= _CHANGED_FEW:
                for r in rows:
                    yield _row(r)
                return
            # More: those numbered before the last one read, then the rest streamed from
            # that number on (a transaction's rows share it and may straddle the limit).
            last = rows[-1][_SEQ_AT]
            for r in rows:
                if r[_SEQ_AT] < last:
                    yield _row(r)
            with raw.cursor(name="plaudit_changed_since") as cur:
                cur.itersize = 5000
                cur.execute(_CHANGED_FROM_PG, (last,))
                for r in cur:
                    yield _row(r)
            return
        c = t.board_scores.c
        result = self.conn.execution_options(yield_per=5000).execute(
            select(t.board_scores).where(c.seq > seq).order_by(c.seq)
        )
        for r in result:
            yield _row(r)

    def last_seq(self) -> int:
        self.flush()
        return counter(self.conn, SEQ)

    def window(self, tenant_id: str, board_id: str, window: str) -> list[BoardScoreRow]:
        self.flush()
        c = t.board_scores.c
        rows = self.conn.execute(
            select(t.board_scores).where(
                c.tenant_id == tenant_id, c.board_id == board_id, c.window == window
            )
        )
        return [_row(r) for r in rows]

    @staticmethod
    def _listed(tenant_id: str, board_id: str, window: str, min_units: int | None) -> Any:
        c = t.board_scores.c
        return and_(
            c.tenant_id == tenant_id,
            c.board_id == board_id,
            c.window == window,
            # What the rank index holds, said literally so that the planner may use it; an
            # all-time window is read from SQL only for a board no longer live (by its key).
            t.RANKED_WINDOWS if window != t.ALL_TIME_WINDOW else true(),
            c.entries > 0,
            c.units >= min_units if min_units is not None else true(),
        )

    def ranked(
        self,
        tenant_id: str,
        board_id: str,
        window: str,
        min_units: int | None,
        offset: int,
        limit: int,
    ) -> list[BoardScoreRow]:
        self.flush()
        c = t.board_scores.c
        rows = self.conn.execute(
            select(t.board_scores)
            .where(self._listed(tenant_id, board_id, window, min_units))
            .order_by(c.units.desc(), c.reached_us, c.subject)
            .offset(offset)
            .limit(limit)
        )
        return [_row(r) for r in rows]

    def rank_of(
        self, tenant_id: str, board_id: str, window: str, subject: str, min_units: int | None
    ) -> tuple[int, BoardScoreRow] | None:
        self.flush()
        c = t.board_scores.c
        listed = self._listed(tenant_id, board_id, window, min_units)
        found = self.conn.execute(
            select(t.board_scores).where(listed, c.subject == subject)
        ).first()
        if found is None:
            return None
        me = _row(found)
        ahead = self.conn.execute(
            select(func.count()).where(
                listed,
                c.units >= me.units,  # a range of the rank index, before the exact test
                or_(
                    c.units > me.units,
                    and_(c.units == me.units, c.reached_us < me.reached_us),
                    and_(
                        c.units == me.units, c.reached_us == me.reached_us, c.subject < me.subject
                    ),
                ),
            )
        ).scalar_one()
        return int(ahead) + 1, me

    def count(self, tenant_id: str, board_id: str, window: str, min_units: int | None) -> int:
        self.flush()
        listed = self._listed(tenant_id, board_id, window, min_units)
        return int(
            self.conn.execute(
                select(func.count()).select_from(t.board_scores).where(listed)
            ).scalar_one()
        )

    def windows(
        self, tenant_id: str, board_id: str, min_units: int | None
    ) -> list[tuple[str, int]]:
        self.flush()
        c = t.board_scores.c
        rows = self.conn.execute(
            select(c.window, func.count())
            .where(
                c.tenant_id == tenant_id,
                c.board_id == board_id,
                c.entries > 0,
                c.units >= min_units if min_units is not None else true(),
            )
            .group_by(c.window)
            .order_by(c.window.desc())
        )
        return [(w, int(n)) for w, n in rows]

    def forget(self, tenant_id: str | None) -> None:
        self.flush()
        for table in (t.board_entries, t.board_scores):
            delete_rows(self.conn, table, tenant_id)

    def optouts(self, tenant_id: str) -> set[str]:
        c = t.board_optouts.c
        return set(self.conn.execute(select(c.player_id).where(c.tenant_id == tenant_id)).scalars())

    def set_optout(self, tenant_id: str, player_id: str, hidden: bool, at: datetime) -> None:
        c = t.board_optouts.c
        if hidden:
            stmt = _insert(self.conn, t.board_optouts).values(
                tenant_id=tenant_id, player_id=player_id, since=at
            )
            self.conn.execute(stmt.on_conflict_do_nothing())
        else:
            self.conn.execute(
                delete(t.board_optouts).where(c.tenant_id == tenant_id, c.player_id == player_id)
            )
