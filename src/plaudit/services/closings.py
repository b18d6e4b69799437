"""Tell others when a leaderboard window closes ("last week's winners"), once per window.

Runs beside the projector on a schedule, in any number of processes: the outbox key of a
window makes the announcement exactly-once, and a window already announced costs one
indexed lookup, not a reading of its standings.
"""

from __future__ import annotations

from plaudit.domain.clock import Clock
from plaudit.leaderboards import windows as w
from plaudit.services.leaderboards import LeaderboardService
from plaudit.services.outbox import window_closed_message
from plaudit.store.ports import Database

TOP = 10


class WindowClosings:
    def __init__(self, db: Database, clock: Clock, leaderboards: LeaderboardService) -> None:
        self.db = db
        self.clock = clock
        self.leaderboards = leaderboards

    def announce(self) -> list[str]:
        """Announce every window that closed (its end and grace passed) and was not yet
        announced: the window before the current one of each calendar board, and a season
        once it is over. Returns ``board/window`` of each announced now."""
        now = self.clock()
        announced = []
        with self.db.read() as uow:
            tenants = sorted(uow.rulesets.tenants_with_epochs())
        for tenant in tenants:
            for board in self.leaderboards.boards(tenant):
                kind = board.board.window
                key = w.SEASON if kind == "season" else w.previous(board, now)
                if key is None or not w.closed(board, key, now):
                    continue
                message = f"window:{board.board.id}:{key}"
                with self.db.read() as uow:
                    if uow.outbox.has(tenant, message):
                        continue
                view = self.leaderboards.window(tenant, board.board.id, key)
                entries, total = self.leaderboards.standings(tenant, view, 0, TOP)
                top = [
                    {"rank": e.rank, "subject": e.subject, "score": e.score, "hidden": e.hidden}
                    for e in entries
                ]
                with self.db.write() as uow:
                    written = uow.outbox.add(
                        tenant,
                        [
                            window_closed_message(
                                board.board.id, key, view.start, view.end, total, top
                            )
                        ],
                        now,
                    )
                    uow.commit()
                if written:
                    announced.append(f"{board.board.id}/{key}")
        return announced
