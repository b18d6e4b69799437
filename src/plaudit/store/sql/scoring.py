"""Repositories of rule sets and of what scoring produces: ledger, awards, states, errors."""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Connection, RowMapping, delete, func, select, true, union_all, update

from plaudit.store.ports import (
    AwardRow,
    LedgerEntry,
    LedgerRow,
    LevelUpRow,
    LiveRuleSet,
    RuleErrorRow,
    RuleSetRecord,
    RuleSetVersion,
)
from plaudit.store.sql import tables as t
from plaudit.store.sql.postgres import TimeText, copy_insert, fetch
from plaudit.store.sql.repositories import (
    _among,
    _insert,
    _pieces,
    _sqlite_datetime,
    delete_rows,
    fetch_among,
    players_events,
    sqlite_insert,
)

_SET_CURSORS_PG = (
    "INSERT INTO cursors (name, position) SELECT * FROM unnest(%s::text[], %s::bigint[]) "
    "ON CONFLICT (name) DO UPDATE SET position = excluded.position"
)
_EPOCHS_PG = (
    "SELECT from_position, ruleset_id, version FROM ruleset_epochs WHERE tenant_id = %s "
    "ORDER BY from_position"
)

_LEDGER_COLUMNS = (
    "tenant_id",
    "player_id",
    "currency",
    "amount",
    "kind",
    "rule_id",
    "ruleset_id",
    "ruleset_version",
    "event_id",
    "reason",
    "actor",
    "occurred_at",
    "recorded_at",
)
_LEDGER_CONFLICT = "ON CONFLICT (tenant_id, event_id, rule_id, currency) DO NOTHING"


class SqlRuleSets:
    def __init__(self, conn: Connection, writing: bool = False) -> None:
        self.conn = conn
        self.writing = writing

    def add(self, record: RuleSetRecord) -> None:
        self.conn.execute(
            t.rulesets.insert().values(
                id=record.id,
                tenant_id=record.tenant_id,
                name=record.name,
                draft=record.draft,
                created_at=record.created_at,
                updated_at=record.updated_at,
            )
        )

    def get(self, tenant_id: str, ruleset_id: str) -> RuleSetRecord | None:
        c = t.rulesets.c
        stmt = select(t.rulesets).where(c.tenant_id == tenant_id, c.id == ruleset_id)
        # In a write, locked to the commit: two publications of one rule set take turns and
        # number their versions one after the other (SQLite's writers take turns anyway).
        row = self.conn.execute(stmt.with_for_update() if self.writing else stmt).first()
        return _ruleset(row._mapping) if row else None

    def all_of(self, tenant_id: str) -> list[RuleSetRecord]:
        c = t.rulesets.c
        rows = self.conn.execute(
            select(t.rulesets).where(c.tenant_id == tenant_id).order_by(c.created_at, c.id)
        ).mappings()
        return [_ruleset(r) for r in rows]

    def save_draft(self, tenant_id: str, ruleset_id: str, draft: str, at: datetime) -> None:
        c = t.rulesets.c
        self.conn.execute(
            update(t.rulesets)
            .where(c.tenant_id == tenant_id, c.id == ruleset_id)
            .values(draft=draft, updated_at=at)
        )

    def add_version(self, tenant_id: str, version: RuleSetVersion) -> None:
        self.conn.execute(
            t.ruleset_versions.insert().values(
                ruleset_id=version.ruleset_id,
                version=version.version,
                tenant_id=tenant_id,
                source=version.source,
                published_at=version.published_at,
                published_by=version.published_by,
                note=version.note,
            )
        )

    def versions(self, tenant_id: str, ruleset_id: str) -> list[RuleSetVersion]:
        c = t.ruleset_versions.c
        rows = self.conn.execute(
            select(t.ruleset_versions)
            .where(c.tenant_id == tenant_id, c.ruleset_id == ruleset_id)
            .order_by(c.version)
        ).mappings()
        return [_version(r) for r in rows]

    def version(self, tenant_id: str, ruleset_id: str, number: int) -> RuleSetVersion | None:
        c = t.ruleset_versions.c
        row = self.conn.execute(
            select(t.ruleset_versions).where(
                c.tenant_id == tenant_id, c.ruleset_id == ruleset_id, c.version == number
            )
        ).first()
        return _version(row._mapping) if row else None

    def live(self, tenant_id: str) -> LiveRuleSet | None:
        c = t.live_rulesets.c
        row = self.conn.execute(select(t.live_rulesets).where(c.tenant_id == tenant_id)).first()
        return LiveRuleSet(row.ruleset_id, row.version, row.since) if row else None

    def tenants_with_epochs(self) -> set[str]:
        return set(self.conn.execute(select(t.ruleset_epochs.c.tenant_id).distinct()).scalars())

    def epochs(self, tenant_id: str) -> list[tuple[int, str, int]]:
        if self.conn.dialect.name == "postgresql":  # once a scoring step: on psycopg
            found = fetch(self.conn, _EPOCHS_PG, (tenant_id,))
            return [(int(p), r, int(v)) for p, r, v in found]
        c = t.ruleset_epochs.c
        rows = self.conn.execute(
            select(c.from_position, c.ruleset_id, c.version)
            .where(c.tenant_id == tenant_id)
            .order_by(c.from_position)
        )
        return [(int(p), r, int(v)) for p, r, v in rows]

    def set_live(self, tenant_id: str, live: LiveRuleSet, from_position: int) -> None:
        e = t.ruleset_epochs.c
        epoch = _insert(self.conn, t.ruleset_epochs).values(
            tenant_id=tenant_id,
            from_position=from_position,
            ruleset_id=live.ruleset_id,
            version=live.version,
        )
        self.conn.execute(
            epoch.on_conflict_do_update(
                index_elements=[e.tenant_id, e.from_position],
                set_={"ruleset_id": live.ruleset_id, "version": live.version},
            )
        )
        c = t.live_rulesets.c
        stmt = _insert(self.conn, t.live_rulesets).values(
            tenant_id=tenant_id, ruleset_id=live.ruleset_id, version=live.version, since=live.since
        )
        self.conn.execute(
            stmt.on_conflict_do_update(
                index_elements=[c.tenant_id],
                set_={"ruleset_id": live.ruleset_id, "version": live.version, "since": live.since},
            )
        )


def _ruleset(row: RowMapping) -> RuleSetRecord:
    return RuleSetRecord(
        row["id"], row["tenant_id"], row["name"], row["draft"], row["created_at"], row["updated_at"]
    )


def _version(row: RowMapping) -> RuleSetVersion:
    return RuleSetVersion(
        row["ruleset_id"],
        row["version"],
        row["source"],
        row["published_at"],
        row["published_by"],
        row["note"],
    )


def ledger_row(r: RowMapping) -> LedgerRow:
    return LedgerRow(
        player_id=r["player_id"],
        currency=r["currency"],
        amount=float(r["amount"]),
        kind=r["kind"],
        rule_id=r["rule_id"],
        occurred_at=r["occurred_at"],
        ruleset_id=r["ruleset_id"],
        ruleset_version=r["ruleset_version"],
        event_id=r["event_id"],
        reason=r["reason"],
        actor=r["actor"],
    )


def award_row(r: RowMapping) -> AwardRow:
    return AwardRow(
        id=r["id"],
        player_id=r["player_id"],
        badge_id=r["badge_id"],
        tier=r["tier"] or None,
        occurrence=r["occurrence"],
        source=r["source"],
        awarded_at=r["awarded_at"],
        expires_at=r["expires_at"],
        event_id=r["event_id"],
        ruleset_id=r["ruleset_id"],
        ruleset_version=r["ruleset_version"],
        evidence=r["evidence"],
        awarded_by=r["awarded_by"],
        revoked_at=r["revoked_at"],
        revoked_reason=r["revoked_reason"],
    )


def _sqlite_time(value: datetime | None) -> str | None:
    return None if value is None else _sqlite_datetime(value)


def _ledger_values(
    tenant_id: str, r: LedgerRow, occurred_at: object, recorded_at: object
) -> tuple[object, ...]:
    """A ledger row in ``_LEDGER_COLUMNS`` order (times as the dialect's path takes them)."""
    return (
        tenant_id,
        r.player_id,
        r.currency,
        r.amount,
        r.kind,
        r.rule_id,
        r.ruleset_id,
        r.ruleset_version,
        r.event_id,
        r.reason,
        r.actor,
        occurred_at,
        recorded_at,
    )


def _sqlite_ledger(
    conn: Connection, tenant_id: str, rows: Sequence[LedgerRow], at: datetime
) -> int:
    """Ledger entries into SQLite, by hand as the event append: SQLAlchemy's per-row parameter
    processing cost more than SQLite's insert (scoring writes several entries per event).
    What all of them share (the tenant, the time recorded; for the entries of rules, their
    kind and no reason nor actor) is written into the statement instead of bound to each
    entry (micro-benchmark of this insert: 4.7-5.3 µs an entry with 13 values bound,
    3.5-4.0 with 6)."""
    times: dict[datetime, str] = {}  # an event's entries share its time
    ruled: list[tuple[object, ...]] = []
    others: list[tuple[object, ...]] = []
    recorded = _sqlite_datetime(at)
    for r in rows:
        when = times.get(r.occurred_at)
        if when is None:
            when = times[r.occurred_at] = _sqlite_datetime(r.occurred_at)
        if r.kind == "rule" and r.reason is None and r.actor is None:
            ruled.append(
                (
                    r.player_id,
                    r.currency,
                    r.amount,
                    r.rule_id,
                    r.ruleset_id,
                    r.ruleset_version,
                    r.event_id,
                    when,
                )
            )
        else:
            others.append(_ledger_values(tenant_id, r, when, recorded))
    added = 0
    if ruled:
        literal = _sqlite_text(tenant_id), _sqlite_text(recorded)
        sql = _RULE_ENTRIES_SQL.format(tenant=literal[0], recorded=literal[1])
        added += int(conn.exec_driver_sql(sql, ruled).rowcount)
    if others:
        added += sqlite_insert(conn, "ledger", _LEDGER_COLUMNS, others, _LEDGER_CONFLICT)
    return added


def _sqlite_text(value: str) -> str:
    """A string as an SQL literal."""
    return "'" + value.replace("'", "''") + "'"


_RULE_ENTRIES_SQL = (
    f"INSERT INTO ledger ({', '.join(_LEDGER_COLUMNS)}) "  # noqa: S608 - constants only
    "VALUES ({tenant}, ?, ?, ?, 'rule', ?, ?, ?, ?, NULL, NULL, ?, {recorded}) " + _LEDGER_CONFLICT
)
_VERSIONS_SQL = (
    "SELECT player_id, version FROM player_states "
    "WHERE tenant_id = ? AND player_id IN (SELECT value FROM json_each(?))"
)
_RETRACTED_SQL = (
    "SELECT event_id FROM event_retractions "
    "WHERE tenant_id = ? AND event_id IN (SELECT value FROM json_each(?))"
)
_AWARD_COLUMNS = (
    "id",
    "tenant_id",
    "player_id",
    "badge_id",
    "tier",
    "occurrence",
    "source",
    "event_id",
    "ruleset_id",
    "ruleset_version",
    "evidence",
    "awarded_by",
    "awarded_at",
    "expires_at",
    "revoked_at",
    "revoked_reason",
)
_STATE_COLUMNS = ("tenant_id", "player_id", "state", "updated_at", "version")
_STATE_CONFLICT = (
    "ON CONFLICT (tenant_id, player_id) DO UPDATE SET state = excluded.state, "
    "updated_at = excluded.updated_at, version = excluded.version"
)


class SqlScoring:
    def __init__(self, conn: Connection, writing: bool = False) -> None:
        self.conn = conn
        self.writing = writing

    def cursor(self, name: str) -> int:
        value = self.conn.execute(
            select(t.cursors.c.position).where(t.cursors.c.name == name)
        ).scalar()
        return int(value or 0)

    def cursors(self, names: Iterable[str]) -> dict[str, int]:
        wanted = sorted(set(names))
        c = t.cursors.c
        found = dict(self.conn.execute(select(c.name, c.position).where(c.name.in_(wanted))).all())
        return {name: int(found.get(name) or 0) for name in wanted}

    def lock_cursors(self, names: Iterable[str]) -> dict[str, int]:
        """The cursors, locked until the transaction ends (row locks on PostgreSQL, taken in
        name order so that two workers never wait for each other in a circle; SQLite's
        writers are serialized anyway): two workers never advance one from the same place."""
        wanted = sorted(set(names))
        found = self._locked_cursors(wanted)
        missing = [name for name in wanted if name not in found]
        if missing:  # first use: create them, then lock them all
            c = t.cursors.c
            self.conn.execute(
                _insert(self.conn, t.cursors).on_conflict_do_nothing(index_elements=[c.name]),
                [{"name": name, "position": 0} for name in missing],
            )
            found = self._locked_cursors(wanted)
        return {name: int(position) for name, position in found.items()}

    def _locked_cursors(self, wanted: list[str]) -> dict[str, int]:
        if self.conn.dialect.name == "postgresql":  # once a scoring step: on psycopg
            sql = "SELECT name, position FROM cursors WHERE name = "
            return dict(fetch_among(self.conn, sql, (), wanted, " ORDER BY name FOR UPDATE"))
        c = t.cursors.c
        stmt = select(c.name, c.position).where(c.name.in_(wanted)).order_by(c.name)
        return dict(self.conn.execute(stmt.with_for_update()).all())

    def state_versions(self, tenant_id: str, player_ids: Iterable[str]) -> dict[str, int]:
        """Each stored state's write token, the rows locked until the transaction ends."""
        if self.conn.dialect.name == "sqlite":
            # By hand, the ids as one JSON parameter: SQLAlchemy's expansion of a long IN list
            # cost more than the lookup (scoring asks for every player of a batch). SQLite's
            # write transaction locks the whole database: no row lock to ask for.
            raw: Any = self.conn.connection.driver_connection
            rows = raw.execute(_VERSIONS_SQL, (tenant_id, orjson.dumps(list(set(player_ids)))))
            return {player_id: int(version) for player_id, version in rows}
        wanted = list(set(player_ids))
        if not wanted:
            return {}
        # Once a scoring step: on psycopg.
        sql = "SELECT player_id, version FROM player_states WHERE tenant_id = %s AND player_id = "
        rows = fetch_among(self.conn, sql, (tenant_id,), wanted, " FOR UPDATE")
        return {player_id: int(version) for player_id, version in rows}

    def set_cursor(self, name: str, position: int) -> None:
        self.set_cursors({name: position})

    def set_cursors(self, positions: Mapping[str, int]) -> None:
        if not positions:
            return
        if self.conn.dialect.name == "postgresql":  # once a scoring step: on psycopg
            fetch(self.conn, _SET_CURSORS_PG, (list(positions), list(positions.values())))
            return
        stmt = _insert(self.conn, t.cursors)
        self.conn.execute(
            stmt.on_conflict_do_update(
                index_elements=[t.cursors.c.name], set_={"position": stmt.excluded.position}
            ),
            [{"name": name, "position": position} for name, position in positions.items()],
        )

    def states(self, tenant_id: str, player_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        c = t.player_states.c
        found: dict[str, dict[str, Any]] = {}
        for chunk in _pieces(self.conn, sorted(set(player_ids))):
            stmt = select(c.player_id, c.state).where(
                c.tenant_id == tenant_id, _among(self.conn, c.player_id, chunk)
            )
            # In a write transaction the rows stay locked until it ends: two writers of one
            # player's state (a worker, a retraction) take turns instead of losing an update.
            rows = self.conn.execute(stmt.with_for_update() if self.writing else stmt)
            found.update((player_id, state) for player_id, state in rows)
        return found

    def save_states(
        self, tenant_id: str, states: Mapping[str, Mapping[str, Any]], at: datetime
    ) -> int:
        token = secrets.randbits(63)
        encoded = {pid: orjson.dumps(state).decode("utf-8") for pid, state in states.items()}
        self.save_encoded_states(tenant_id, encoded, at, token)
        return token

    def save_encoded_states(
        self, tenant_id: str, states: Mapping[str, str], at: datetime, token: int
    ) -> None:
        if not states:
            return
        if self.conn.dialect.name == "sqlite":
            # By hand: SQLAlchemy's per-row JSON processing cost more than SQLite's write
            # (scoring saves the state of every player of a batch).
            at_text = _sqlite_datetime(at)
            sqlite_insert(
                self.conn,
                "player_states",
                _STATE_COLUMNS,
                [(tenant_id, pid, state, at_text, token) for pid, state in states.items()],
                _STATE_CONFLICT,
            )
            return
        at_text = at.isoformat()  # psycopg's datetime dumper: ~4 µs a value (TimeText)
        copy_insert(
            self.conn,
            "player_states",
            _STATE_COLUMNS,
            ((tenant_id, pid, state, at_text, token) for pid, state in sorted(states.items())),
            _STATE_CONFLICT,
        )

    def append_ledger(self, tenant_id: str, rows: Sequence[LedgerRow], at: datetime) -> int:
        if not rows:
            return 0
        if self.conn.dialect.name == "sqlite":
            return _sqlite_ledger(self.conn, tenant_id, rows, at)
        time = TimeText()
        return copy_insert(
            self.conn,
            "ledger",
            _LEDGER_COLUMNS,
            (_ledger_values(tenant_id, r, time(r.occurred_at), time(at)) for r in rows),
            _LEDGER_CONFLICT,
            rarely_conflict=True,
        )

    def ledger(
        self, tenant_id: str, player_id: str, after_id: int, limit: int
    ) -> list[LedgerEntry]:
        both = self._players_entries(tenant_id, player_id, after_id)
        rows = self.conn.execute(both.order_by("id").limit(limit)).mappings()
        return [LedgerEntry(r["id"], ledger_row(r), r["recorded_at"]) for r in rows]

    def balances(self, tenant_id: str, player_id: str) -> dict[str, float]:
        entries = self._players_entries(tenant_id, player_id, 0).subquery()
        rows = self.conn.execute(
            select(entries.c.currency, func.sum(entries.c.amount))
            .group_by(entries.c.currency)
            .order_by(entries.c.currency)  # SQLite's GROUP BY sorts; PostgreSQL's may hash
        )
        return {currency: round(float(total), 4) for currency, total in rows}

    def _players_entries(self, tenant_id: str, player_id: str, after_id: int) -> Any:
        """The player's ledger entries after ``after_id``, unordered. The ledger has no
        index by player: found by way of the player's events, and the few without an event
        through their partial index."""
        c = t.ledger.c
        mine = (c.tenant_id == tenant_id, c.player_id == player_id, c.id > after_id)
        events = players_events(self.conn, tenant_id, [player_id], t.events.c.id)
        return union_all(
            select(t.ledger).where(*mine, c.event_id.in_(events)),
            select(t.ledger).where(*mine, c.event_id.is_(None)),
        )

    def add_awards(self, tenant_id: str, rows: Sequence[AwardRow]) -> int:
        if not rows:
            return 0
        if self.conn.dialect.name == "sqlite":
            return sqlite_insert(
                self.conn,
                "badge_awards",
                _AWARD_COLUMNS,
                [
                    (
                        r.id,
                        tenant_id,
                        r.player_id,
                        r.badge_id,
                        r.tier or "",
                        r.occurrence,
                        r.source,
                        r.event_id,
                        r.ruleset_id,
                        r.ruleset_version,
                        None if r.evidence is None else orjson.dumps(r.evidence).decode(),
                        r.awarded_by,
                        _sqlite_datetime(r.awarded_at),
                        _sqlite_time(r.expires_at),
                        _sqlite_time(r.revoked_at),
                        r.revoked_reason,
                    )
                    for r in rows
                ],
                "ON CONFLICT (tenant_id, event_id, badge_id, tier, occurrence) DO NOTHING",
            )
        c = t.badge_awards.c
        stmt = _insert(self.conn, t.badge_awards).on_conflict_do_nothing(
            index_elements=[c.tenant_id, c.event_id, c.badge_id, c.tier, c.occurrence]
        )
        result = self.conn.execute(
            stmt,
            [
                {
                    "id": r.id,
                    "tenant_id": tenant_id,
                    "player_id": r.player_id,
                    "badge_id": r.badge_id,
                    "tier": r.tier or "",
                    "occurrence": r.occurrence,
                    "source": r.source,
                    "event_id": r.event_id,
                    "ruleset_id": r.ruleset_id,
                    "ruleset_version": r.ruleset_version,
                    "evidence": r.evidence,
                    "awarded_by": r.awarded_by,
                    "awarded_at": r.awarded_at,
                    "expires_at": r.expires_at,
                    "revoked_at": r.revoked_at,
                    "revoked_reason": r.revoked_reason,
                }
                for r in rows
            ],
        )
        return int(result.rowcount)

    def awards(
        self, tenant_id: str, player_id: str | None = None, badge_id: str | None = None
    ) -> list[AwardRow]:
        c = t.badge_awards.c
        stmt = select(t.badge_awards).where(c.tenant_id == tenant_id)
        if player_id is not None:
            stmt = stmt.where(c.player_id == player_id)
        if badge_id is not None:
            stmt = stmt.where(c.badge_id == badge_id)
        rows = self.conn.execute(stmt.order_by(c.awarded_at, c.id)).mappings()
        return [award_row(r) for r in rows]

    def add_level_ups(self, tenant_id: str, rows: Sequence[LevelUpRow]) -> None:
        if not rows:
            return
        if self.conn.dialect.name == "sqlite":
            sqlite_insert(
                self.conn,
                "level_ups",
                (
                    "tenant_id",
                    "player_id",
                    "currency",
                    "level_index",
                    "level",
                    "event_id",
                    "reached_at",
                ),
                [
                    (
                        tenant_id,
                        r.player_id,
                        r.currency,
                        r.level_index,
                        r.level,
                        r.event_id,
                        _sqlite_datetime(r.reached_at),
                    )
                    for r in rows
                ],
                "ON CONFLICT (tenant_id, player_id, currency, level_index) DO NOTHING",
            )
            return
        c = t.level_ups.c
        stmt = _insert(self.conn, t.level_ups).on_conflict_do_nothing(
            index_elements=[c.tenant_id, c.player_id, c.currency, c.level_index]
        )
        self.conn.execute(
            stmt,
            [
                {
                    "tenant_id": tenant_id,
                    "player_id": r.player_id,
                    "currency": r.currency,
                    "level_index": r.level_index,
                    "level": r.level,
                    "event_id": r.event_id,
                    "reached_at": r.reached_at,
                }
                for r in rows
            ],
        )

    def add_rule_errors(self, tenant_id: str, rows: Sequence[RuleErrorRow]) -> None:
        if not rows:
            return
        c = t.rule_errors.c
        stmt = _insert(self.conn, t.rule_errors).on_conflict_do_nothing(
            index_elements=[c.tenant_id, c.event_id, c.rule_id]
        )
        self.conn.execute(
            stmt,
            [
                {
                    "tenant_id": tenant_id,
                    "event_id": r.event_id,
                    "player_id": r.player_id,
                    "rule_id": r.rule_id,
                    "ruleset_id": r.ruleset_id,
                    "ruleset_version": r.ruleset_version,
                    "message": r.message[:1000],
                    "at": r.at,
                }
                for r in rows
            ],
        )

    def adjusted_tenants(self, tenant_id: str | None) -> list[str]:
        c = t.ledger.c
        stmt = select(c.tenant_id).where(c.kind.in_(["adjustment", "backfill"])).distinct()
        if tenant_id is not None:
            stmt = stmt.where(c.tenant_id == tenant_id)
        return sorted(self.conn.execute(stmt).scalars())

    def adjustments(self, tenant_id: str) -> list[LedgerRow]:
        c = t.ledger.c
        rows = self.conn.execute(
            select(t.ledger)
            .where(c.tenant_id == tenant_id, c.kind.in_(["adjustment", "backfill"]))
            .order_by(c.id)
        ).mappings()
        return [ledger_row(r) for r in rows]

    def retract(self, tenant_id: str, event_id: str, reason: str, actor: str, at: datetime) -> bool:
        c = t.event_retractions.c
        result = self.conn.execute(
            _insert(self.conn, t.event_retractions)
            .values(tenant_id=tenant_id, event_id=event_id, reason=reason, actor=actor, at=at)
            .on_conflict_do_nothing(index_elements=[c.tenant_id, c.event_id])
        )
        return result.rowcount == 1

    def retracted(self, tenant_id: str, event_ids: Iterable[str]) -> set[str]:
        if self.conn.dialect.name == "sqlite":  # as state_versions: one JSON parameter
            raw: Any = self.conn.connection.driver_connection
            rows = raw.execute(_RETRACTED_SQL, (tenant_id, orjson.dumps(list(set(event_ids)))))
            return {event_id for (event_id,) in rows}
        wanted = list(set(event_ids))
        if not wanted:
            return set()
        # Once a scoring step: on psycopg.
        sql = "SELECT event_id FROM event_retractions WHERE tenant_id = %s AND event_id = "
        return {event_id for (event_id,) in fetch_among(self.conn, sql, (tenant_id,), wanted)}

    def event_ledger(self, tenant_id: str, event_id: str) -> list[LedgerRow]:
        c = t.ledger.c
        rows = self.conn.execute(
            select(t.ledger)
            .where(c.tenant_id == tenant_id, c.event_id == event_id, c.kind == "rule")
            .order_by(c.id)
        ).mappings()
        return [ledger_row(r) for r in rows]

    def move_player(self, tenant_id: str, from_player: str, to_player: str) -> None:
        # The ledger by way of the events (of either player: the events may have moved
        # already), and the entries without an event: it has no index by player.
        c = t.ledger.c
        theirs = (c.tenant_id == tenant_id, c.player_id == from_player)
        events = players_events(self.conn, tenant_id, [from_player, to_player], t.events.c.id)
        for which in (c.event_id.in_(events), c.event_id.is_(None)):
            self.conn.execute(update(t.ledger).where(*theirs, which).values(player_id=to_player))
        for table in (t.badge_awards, t.rule_errors, t.issuance_log):
            self.conn.execute(
                update(table)
                .where(table.c.tenant_id == tenant_id, table.c.player_id == from_player)
                .values(player_id=to_player)
            )
        for table in (t.level_ups, t.player_states):
            self.conn.execute(
                delete(table).where(
                    table.c.tenant_id == tenant_id, table.c.player_id == from_player
                )
            )

    def derived_totals(self, tenant_id: str) -> dict[tuple[str, str], float]:
        c = t.ledger.c
        rows = self.conn.execute(
            select(c.player_id, c.currency, func.sum(c.amount))
            .where(c.tenant_id == tenant_id, c.kind != "adjustment")
            .group_by(c.player_id, c.currency)
        )
        return {(p, cur): round(float(total), 4) for p, cur, total in rows}

    def save_backfill(self, tenant_id: str, record: Mapping[str, Any]) -> None:
        c = t.backfills.c
        values = {k: v for k, v in record.items() if k not in ("id", "tenant_id")}
        changed = self.conn.execute(
            update(t.backfills)
            .where(c.tenant_id == tenant_id, c.id == record["id"])
            .values(**values)
        )
        if changed.rowcount == 0:
            self.conn.execute(t.backfills.insert().values(tenant_id=tenant_id, **record))

    def backfill(self, tenant_id: str, backfill_id: str) -> dict[str, Any] | None:
        c = t.backfills.c
        stmt = select(t.backfills).where(c.tenant_id == tenant_id, c.id == backfill_id)
        # In a write, locked to the commit: two confirmations take turns, and the second
        # finds it confirmed (SQLite's writers take turns anyway).
        row = self.conn.execute(stmt.with_for_update() if self.writing else stmt).first()
        return dict(row._mapping) if row else None

    def forget_derived(self, tenant_id: str | None) -> None:
        def where(table: Any) -> Any:
            return table.c.tenant_id == tenant_id if tenant_id is not None else true()

        kept_ledger = t.ledger.c.kind.not_in(["rule", "retraction"])
        kept_awards = t.badge_awards.c.source != "rule"
        if tenant_id is None and not self._any(t.ledger, kept_ledger):
            delete_rows(self.conn, t.ledger, None)
        else:
            self.conn.execute(delete(t.ledger).where(where(t.ledger), ~kept_ledger))
        if tenant_id is None and not self._any(t.badge_awards, kept_awards):
            delete_rows(self.conn, t.issuance_log, None)
            delete_rows(self.conn, t.badge_awards, None)
        else:
            rule_awards = select(t.badge_awards.c.id).where(where(t.badge_awards), ~kept_awards)
            self.conn.execute(
                delete(t.issuance_log).where(
                    where(t.issuance_log), t.issuance_log.c.award_id.in_(rule_awards)
                )
            )
            self.conn.execute(delete(t.badge_awards).where(where(t.badge_awards), ~kept_awards))
        for table in (t.level_ups, t.player_states, t.rule_errors):
            delete_rows(self.conn, table, tenant_id)

    def _any(self, table: Any, condition: Any) -> bool:
        return (
            self.conn.execute(select(true()).select_from(table).where(condition).limit(1)).first()
            is not None
        )

    def rule_errors(
        self, tenant_id: str, event_id: str | None, after_id: int, limit: int
    ) -> list[tuple[int, RuleErrorRow]]:
        c = t.rule_errors.c
        stmt = select(t.rule_errors).where(c.tenant_id == tenant_id, c.id > after_id)
        if event_id is not None:
            stmt = stmt.where(c.event_id == event_id)
        rows = self.conn.execute(stmt.order_by(c.id).limit(limit)).mappings()
        return [
            (
                r["id"],
                RuleErrorRow(
                    r["event_id"],
                    r["player_id"],
                    r["rule_id"],
                    r["ruleset_id"],
                    r["ruleset_version"],
                    r["message"],
                    r["at"],
                ),
            )
            for r in rows
        ]
