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
        """Announce the windows that closed (end and grace passed) and were not yet: the
        latest two of each calendar board (a restart after a short outage misses none), and
        a season once it is over. Windows nobody played in are not announced. Returns
        ``board/window`` of each announced now."""
        now = self.clock()
        announced = []
        with self.db.read() as uow:
            tenants = sorted(uow.rulesets.tenants_with_epochs())
        for tenant in tenants:
            for board, key in (
                (b, k) for b in self.leaderboards.boards(tenant) for k in w.recently_closed(b, now)
            ):
                message = f"window:{board.board.id}:{key}"
                with self.db.read() as uow:
                    if uow.outbox.has(tenant, message):
                        continue
                view = self.leaderboards.window(tenant, board.board.id, key)
                entries, total = self.leaderboards.standings(tenant, view, 0, TOP)
                if total == 0:
                    continue  # nobody played: no winners to announce
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
