"""Leaderboards: keep the projection in step with SQL, answer standings, and reconcile.

SQL's ``board_scores`` is the truth. The projection (memory or Redis) holds the open windows
of the live boards and is fed absolute standings from committed rows (``sync``), so it can
lag but never run ahead of what was committed. Closed windows are answered from SQL.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar

from plaudit.domain.clock import Clock
from plaudit.errors import NotFound
from plaudit.leaderboards import windows as w
from plaudit.leaderboards.entries import from_micros, to_units
from plaudit.leaderboards.ports import (
    SCALE,
    AsyncReads,
    BoardKey,
    Change,
    Projection,
    Ranked,
    Standing,
)
from plaudit.rules.compiler import CompiledBoard, CompiledRuleSet
from plaudit.rules.evaluate import group_name
from plaudit.services.players import find_player
from plaudit.services.rulesets import RuleBook
from plaudit.store.ports import BoardScoreRow, Database, UnitOfWork

log = logging.getLogger("plaudit.leaderboards")
T = TypeVar("T")
_NO_IO: ContextVar[bool] = ContextVar("plaudit_leaderboards_no_io", default=False)


class NeedsIO(Exception):
    """An answer tried inline needs to wait for I/O: it is run on a thread instead."""


# How long a process trusts its view of the live rule set and of opt-outs before reading
# them again: publishing elsewhere (another process) shows on boards within this time.
_LIVE_TTL = 1.0
_OPTOUT_TTL = 5.0


@dataclass(frozen=True, slots=True)
class Entry:
    rank: int
    subject: str | None  # None: a player who opted out, seen by someone else
    score: float
    reached_at: datetime
    hidden: bool = False


@dataclass(frozen=True, slots=True)
class WindowView:
    board: CompiledBoard
    key: str
    state: str  # open | closed | future
    start: datetime | None
    end: datetime | None


@dataclass
class Reconciled:
    windows: int = 0
    subjects: int = 0
    missing: int = 0  # in SQL, not in the projection
    extra: int = 0  # in the projection, not in SQL
    wrong: int = 0  # different score or time
    repaired: list[str] = field(default_factory=list)  # "tenant/board/window"
    retired: list[str] = field(default_factory=list)  # closed windows dropped

    @property
    def drift(self) -> int:
        return self.missing + self.extra + self.wrong


def _units_min(board: CompiledBoard) -> int | None:
    return None if board.board.min_score is None else to_units(board.board.min_score)


def _listed(board: CompiledBoard, units: int, entries: int) -> bool:
    minimum = _units_min(board)
    return entries > 0 and (minimum is None or units >= minimum)


class LeaderboardService:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        book: RuleBook,
        projection: Projection,
        in_process: bool = False,
        async_reads: AsyncReads | None = None,
    ) -> None:
        self.db = db
        # The projection's hot reads as coroutines (Redis): see page_async, around_async.
        self.async_reads = async_reads
        # The projection answers without I/O (memory): queries may run on the event loop.
        self.in_process = in_process
        self.clock = clock
        self.book = book
        self.projection = projection
        self._live: dict[str, tuple[float, CompiledRuleSet | None]] = {}
        self._optouts: dict[str, tuple[float, set[str]]] = {}
        self._sync_lock = threading.Lock()

    # --- answering without waiting ----------------------------------------------------------

    def _read(self) -> AbstractContextManager[UnitOfWork]:
        if _NO_IO.get():
            raise NeedsIO
        return self.db.read()

    @staticmethod
    def _attempt(answer: Callable[[], T]) -> tuple[bool, T | None]:
        """(True, answer()) when it needs no I/O; (False, None), having read nothing, when
        it would have to wait for SQL."""
        token = _NO_IO.set(True)
        try:
            return True, answer()
        except NeedsIO:
            return False, None
        finally:
            _NO_IO.reset(token)

    def try_inline(self, answer: Callable[[], T]) -> tuple[bool, T | None]:
        """Run a query right here when it needs no I/O (an in-process projection and warm
        caches); otherwise (False, None): run it on a thread. A thread hop cost more than a
        whole top-10 answer from memory."""
        return self._attempt(answer) if self.in_process else (False, None)

    def _open_view(self, tenant_id: str, board_id: str, window: str | None) -> WindowView | None:
        """The window, when it is open and resolving it needs no I/O."""
        _, view = self._attempt(lambda: self.window(tenant_id, board_id, window))
        return view if view is not None and view.state == "open" else None

    def _shown(
        self, tenant_id: str, view: WindowView, ranked: list[Ranked], viewer: str | None
    ) -> tuple[list[Entry], str] | None:
        """Entries as others may see them, and the opt-out part of the version; None when
        the opt-outs must be read again."""
        _, shown = self._attempt(
            lambda: (
                self._entries(view, ranked, viewer, tenant_id),
                self._hidden_tag(tenant_id, view),
            )
        )
        return shown

    async def page_async(
        self, tenant_id: str, board_id: str, window: str | None, offset: int, limit: int
    ) -> tuple[WindowView, list[Entry], int, str] | None:
        """``page`` of an open window, read with the projection's coroutines; None when
        the answer needs SQL (then run ``page`` on a thread)."""
        view = self._open_view(tenant_id, board_id, window)
        if self.async_reads is None or view is None:
            return None
        key = BoardKey(tenant_id, board_id, view.key)
        ranked, total, version = await self.async_reads.page_async(key, offset, limit)
        shown = self._shown(tenant_id, view, ranked, None)
        if shown is None:
            return None
        return view, shown[0], total, f"p{version}{shown[1]}"

    async def around_async(
        self, tenant_id: str, board_id: str, window: str | None, ref: str, k: int
    ) -> tuple[WindowView, str, list[Entry], str] | None:
        """``around`` of an open window for a group, or for a ranked player named by their
        ``plr_`` id, read with the projection's coroutines; None otherwise (a thread then
        resolves the reference in SQL)."""
        view = self._open_view(tenant_id, board_id, window)
        if self.async_reads is None or view is None:
            return None
        group = view.board.board.group_by is not None
        if not group and not ref.startswith("plr_"):
            return None
        key = BoardKey(tenant_id, board_id, view.key)
        ranked, version = await self.async_reads.around_async(key, ref, k)
        if not ranked and not group:
            return None  # unranked, or merged into another player: SQL knows
        shown = self._shown(tenant_id, view, ranked, ref)
        if shown is None:
            return None
        return view, ref, shown[0], f"p{version}{shown[1]}"

    # --- definitions ----------------------------------------------------------------------

    def _rules(self, uow: UnitOfWork | None, tenant_id: str) -> CompiledRuleSet | None:
        cached = self._live.get(tenant_id)
        if cached is not None and time.monotonic() - cached[0] < _LIVE_TTL:
            return cached[1]
        if uow is None:
            with self._read() as fresh:
                live = self.book.live(fresh, tenant_id)
        else:
            live = self.book.live(uow, tenant_id)
        rules = live[1] if live else None
        self._live[tenant_id] = (time.monotonic(), rules)
        return rules

    def forget_live(self, tenant_id: str) -> None:
        """A new version went live here: look again now rather than after the TTL."""
        self._live.pop(tenant_id, None)

    def boards(self, tenant_id: str) -> list[CompiledBoard]:
        rules = self._rules(None, tenant_id)
        return list(rules.boards.values()) if rules else []

    def board(self, tenant_id: str, board_id: str) -> CompiledBoard:
        rules = self._rules(None, tenant_id)
        found = rules.boards.get(board_id) if rules else None
        if found is None:
            known = ", ".join(sorted(rules.boards)) if rules and rules.boards else "none"
            raise NotFound(f"no leaderboard {board_id!r} in the live rule set (known: {known})")
        return found

    def window(self, tenant_id: str, board_id: str, key: str | None) -> WindowView:
        """Resolve ``current`` (the default), ``previous`` or a window's name."""
        board = self.board(tenant_id, board_id)
        now = self.clock()
        if key in (None, "", "current"):
            resolved = w.current(board, now)
        elif key == "previous":
            before = w.previous(board, now)
            if before is None:
                raise NotFound(f"leaderboard {board_id!r} has one window ({w.current(board, now)})")
            resolved = before
        else:
            resolved = key
        try:
            start, end = w.bounds(board, resolved)
        except w.UnknownWindow as exc:
            raise NotFound(f"{exc} (or current, previous)") from None
        if w.is_future(board, resolved, now):
            state = "future"
        elif w.held(board, resolved, now):
            state = "open"
        else:
            state = "closed"
        return WindowView(board, resolved, state, start, end)

    # --- feeding the projection -------------------------------------------------------------

    def sync(self) -> int:
        """Bring the projection up to what SQL has committed; returns the rows applied."""
        with self._sync_lock, self.db.read() as uow:
            cursor = self.projection.cursor()
            now = self.clock()
            changes: list[Change] = []
            seen = cursor
            for row in uow.boards.changed_since(cursor):
                seen = max(seen, row.seq)
                change = self._change(uow, row, now)
                if change is not None:
                    changes.append(change)
            if seen > cursor:  # then SQL's last number is past the cursor, as it should be
                self.projection.apply(changes, seen)
                return len(changes)
            last = uow.boards.last_seq()
            if cursor > last:  # SQL was rebuilt (replay) or reset: start over
                self._rebuild(uow, last)
            return 0

    def _change(self, uow: UnitOfWork, row: BoardScoreRow, now: datetime) -> Change | None:
        rules = self._rules(uow, row.tenant_id)
        board = rules.boards.get(row.board_id) if rules else None
        if board is None:  # perhaps published since the view was cached: look again
            self._live.pop(row.tenant_id, None)
            rules = self._rules(uow, row.tenant_id)
            board = rules.boards.get(row.board_id) if rules else None
        key = BoardKey(row.tenant_id, row.board_id, row.window)
        if board is None:
            return Change(key, row.subject, 0, 0, listed=False)
        try:
            if w.closed(board, row.window, now):
                return None  # a closed window is answered from SQL
        except w.UnknownWindow:
            return Change(key, row.subject, 0, 0, listed=False)  # the board's windows changed
        return Change(
            key, row.subject, row.units, row.reached_us, _listed(board, row.units, row.entries)
        )

    def start(self) -> None:
        """At start: an empty projection (memory, or a Redis that lost its data) is rebuilt
        from SQL; one that survived catches up with what changed meanwhile."""
        if self.projection.cursor() == 0:
            self.rebuild()
        else:
            self.sync()

    def refresh(self, tenant_id: str) -> Reconciled:
        """A rule-set version went live: boards, windows or minimums may have changed."""
        self.forget_live(tenant_id)
        return self.reconcile()

    def rebuild(self) -> None:
        """Load the projection from SQL: the open windows of every live board."""
        with self._sync_lock, self.db.read() as uow:
            self._rebuild(uow, uow.boards.last_seq())

    def _rebuild(self, uow: UnitOfWork, last: int) -> None:
        self.projection.reset(0)
        for board, key in self._open_windows(uow):
            self.projection.replace(key, self._sql_standings(uow, key.tenant_id, board, key.window))
        self.projection.apply([], last)

    def _open_windows(self, uow: UnitOfWork) -> Iterator[tuple[CompiledBoard, BoardKey]]:
        """Every open window of every live board, with the live rules read afresh."""
        now = self.clock()
        for tenant in sorted(uow.rulesets.tenants_with_epochs()):
            self._live.pop(tenant, None)
            rules = self._rules(uow, tenant)
            for board in rules.boards.values() if rules else ():
                for window in w.open_windows(board, now):
                    yield board, BoardKey(tenant, board.board.id, window)

    @staticmethod
    def _sql_standings(
        uow: UnitOfWork, tenant_id: str, board: CompiledBoard, key: str
    ) -> list[Standing]:
        return [
            Standing(r.subject, r.units, r.reached_us)
            for r in uow.boards.window(tenant_id, board.board.id, key)
            if _listed(board, r.units, r.entries)
        ]

    def reconcile(self) -> Reconciled:
        """Compare every open window of the projection with SQL, repair what differs, and
        drop windows that have closed (their standings stay in SQL)."""
        self.sync()
        report = Reconciled()
        with self._sync_lock, self.db.read() as uow:
            expected: set[BoardKey] = set()
            for board, key in self._open_windows(uow):
                expected.add(key)
                self._compare(uow, board, key, report)
            report.retired = self._drop_retired(uow, expected)
        return report

    def retire(self) -> list[str]:
        """Drop the windows that have closed since (their final standings stay in SQL)."""
        with self._sync_lock, self.db.read() as uow:
            return self._drop_retired(uow, set())

    def _drop_retired(self, uow: UnitOfWork, keep: set[BoardKey]) -> list[str]:
        now = self.clock()
        dropped = []
        for key in self.projection.keys():  # noqa: SIM118 - a port's method, not a dict
            if key not in keep and self._retired(uow, key, now):
                self.projection.drop(key)
                dropped.append(f"{key.tenant_id}/{key.board_id}/{key.window}")
        return dropped

    def _retired(self, uow: UnitOfWork, key: BoardKey, now: datetime) -> bool:
        """A window the projection no longer needs: closed, or of a board that went away."""
        rules = self._rules(uow, key.tenant_id)
        board = rules.boards.get(key.board_id) if rules else None
        try:
            return board is None or w.closed(board, key.window, now)
        except w.UnknownWindow:
            return True

    def _compare(
        self, uow: UnitOfWork, board: CompiledBoard, key: BoardKey, report: Reconciled
    ) -> None:
        truth = {
            s.subject: (s.units, s.reached_us)
            for s in self._sql_standings(uow, key.tenant_id, board, key.window)
        }
        held = self.projection.entries(key)
        report.windows += 1
        report.subjects += len(truth)
        missing = len(truth.keys() - held.keys())
        extra = len(held.keys() - truth.keys())
        wrong = sum(1 for s, v in truth.items() if s in held and held[s] != v)
        if missing or extra or wrong:
            report.missing += missing
            report.extra += extra
            report.wrong += wrong
            report.repaired.append(f"{key.tenant_id}/{key.board_id}/{key.window}")
            self.projection.replace(key, (Standing(s, u, r) for s, (u, r) in truth.items()))

    # --- queries ------------------------------------------------------------------------------

    def hidden(self, tenant_id: str) -> set[str]:
        cached = self._optouts.get(tenant_id)
        if cached is not None and time.monotonic() - cached[0] < _OPTOUT_TTL:
            return cached[1]
        with self._read() as uow:
            found = uow.boards.optouts(tenant_id)
        self._optouts[tenant_id] = (time.monotonic(), found)
        return found

    def set_hidden(self, tenant_id: str, ref: str, hidden: bool) -> str:
        with self.db.write() as uow:
            player = find_player(uow, tenant_id, ref)
            uow.boards.set_optout(tenant_id, player.id, hidden, self.clock())
            uow.commit()
        self._optouts.pop(tenant_id, None)
        return player.id

    def _entries(
        self, view: WindowView, ranked: Iterable[Ranked], viewer: str | None, tenant_id: str
    ) -> list[Entry]:
        group = view.board.board.group_by is not None
        hidden = set() if group else self.hidden(tenant_id)
        out = []
        for r in ranked:
            masked = r.subject in hidden and r.subject != viewer
            out.append(
                Entry(
                    r.rank,
                    None if masked else r.subject,
                    r.units / SCALE,
                    from_micros(r.reached_us),
                    masked,
                )
            )
        return out

    def standings(
        self,
        tenant_id: str,
        view: WindowView,
        offset: int,
        limit: int,
        viewer: str | None = None,
    ) -> tuple[list[Entry], int]:
        """A page of the window in rank order, and the number of participants."""
        entries, total, _ = self.page(tenant_id, view, offset, limit, viewer)
        return entries, total

    def page(
        self,
        tenant_id: str,
        view: WindowView,
        offset: int,
        limit: int,
        viewer: str | None = None,
    ) -> tuple[list[Entry], int, str]:
        """``standings`` with the window's version (for its ETag), read together."""
        board_id = view.board.board.id
        if view.state == "open":
            key = BoardKey(tenant_id, board_id, view.key)
            ranked, total, version = self.projection.page(key, offset, limit)
            entries = self._entries(view, ranked, viewer, tenant_id)
            return entries, total, f"p{version}{self._hidden_tag(tenant_id, view)}"
        if view.state == "future":
            return [], 0, self.version(tenant_id, view)
        minimum = _units_min(view.board)
        with self._read() as uow:
            rows = uow.boards.ranked(tenant_id, board_id, view.key, minimum, offset, limit)
            total = uow.boards.count(tenant_id, board_id, view.key, minimum)
        ranked = [
            Ranked(offset + i + 1, r.subject, r.units, r.reached_us) for i, r in enumerate(rows)
        ]
        entries = self._entries(view, ranked, viewer, tenant_id)
        return entries, total, self.version(tenant_id, view)

    def subject_of(self, tenant_id: str, view: WindowView, ref: str) -> str:
        """The subject a reference names: a player (by any reference) or a group's name."""
        if view.board.board.group_by is not None:
            return ref
        if ref.startswith("plr_") and view.state == "open":
            key = BoardKey(tenant_id, view.board.board.id, view.key)
            if self.projection.standing(key, ref) is not None:
                return ref  # a live player's own id (a merged one has no standing left)
        with self._read() as uow:
            return find_player(uow, tenant_id, ref).id

    def around(
        self, tenant_id: str, view: WindowView, subject: str, k: int, viewer: str | None = None
    ) -> list[Entry]:
        """The subject's standing with up to ``k`` neighbours on each side; [] if unranked."""
        if view.state == "future":
            return []
        board_id = view.board.board.id
        if view.state == "open":
            ranked = self.projection.around(BoardKey(tenant_id, board_id, view.key), subject, k)
            return self._entries(view, ranked, viewer or subject, tenant_id)
        minimum = _units_min(view.board)
        with self._read() as uow:
            mine = uow.boards.rank_of(tenant_id, board_id, view.key, subject, minimum)
            if mine is None:
                return []
            start = max(0, mine[0] - 1 - k)
            rows = uow.boards.ranked(
                tenant_id, board_id, view.key, minimum, start, mine[0] + k - start
            )
        ranked = [
            Ranked(start + i + 1, r.subject, r.units, r.reached_us) for i, r in enumerate(rows)
        ]
        return self._entries(view, ranked, viewer or subject, tenant_id)

    def version(self, tenant_id: str, view: WindowView) -> str:
        """Changes whenever what the window shows may have changed (for ETags and streams):
        its standings, or who is hidden on player boards."""
        hidden = self._hidden_tag(tenant_id, view)
        if view.state == "open":
            key = BoardKey(tenant_id, view.board.board.id, view.key)
            return f"p{self.projection.version(key)}{hidden}"
        with self._read() as uow:
            return f"s{uow.boards.last_seq()}{hidden}"

    def _hidden_tag(self, tenant_id: str, view: WindowView) -> str:
        if view.board.board.group_by is not None:
            return ""  # groups are never hidden
        return f"h{self._hidden_version(tenant_id)}"

    def _hidden_version(self, tenant_id: str) -> str:
        # Stable across processes (str hashes are not): several API processes agree on ETags.
        ids = "\n".join(sorted(self.hidden(tenant_id)))
        return hashlib.blake2b(ids.encode(), digest_size=6).hexdigest()

    def player_ranks(
        self, tenant_id: str, ref: str
    ) -> tuple[str, list[tuple[WindowView, str | None, Entry | None, int]]]:
        """Every board's current standing of a player (or of the player's group)."""
        with self._read() as uow:
            player = find_player(uow, tenant_id, ref)
        views = [self.window(tenant_id, b.board.id, None) for b in self.boards(tenant_id)]
        pairs: list[tuple[BoardKey, str]] = []
        for view in views:
            group_by = view.board.board.group_by
            mine = player.id if group_by is None else group_name(player.attributes.get(group_by))
            pairs.append((BoardKey(tenant_id, view.board.board.id, view.key), mine or ""))
        found = self.projection.standings(pairs)
        out = []
        for view, (key, mine), ranked in zip(views, pairs, found, strict=True):
            entry = None
            if ranked is not None and view.state == "open":
                entry = self._entries(view, [ranked], player.id, tenant_id)[0]
            out.append((view, mine or None, entry, self.projection.size(key)))
        return player.id, out

    def history(self, tenant_id: str, board_id: str) -> list[tuple[WindowView, int]]:
        """Every window with scores, newest first, with its number of participants."""
        board = self.board(tenant_id, board_id)
        with self._read() as uow:
            found = uow.boards.windows(tenant_id, board.board.id, _units_min(board))
        out = []
        for key, participants in found:
            try:
                out.append((self.window(tenant_id, board_id, key), participants))
            except NotFound:
                continue  # a window of an earlier definition of the board
        return out
