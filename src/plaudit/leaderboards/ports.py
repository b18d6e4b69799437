"""The leaderboard projection: ranked standings per (tenant, board, window).

SQL (``board_scores``) is the truth. A projection holds the open windows, is rebuilt from SQL
at start, and is fed *absolute* standings from committed rows, with the position in SQL it has
reached: applying the same change twice is harmless, and a lost change is found by comparing.

Order within a window: higher score first; on equal scores, whoever reached the score first
(smaller ``reached_us``); on equal times, the subject id in ascending order. Ranks are 1-based
and dense over the listed subjects (no two subjects share a rank).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

# Scores are held as integers of 1/10,000 (the ledger's four decimals): sums are exact and
# equal scores are equal, which floating-point sums would not guarantee.
SCALE = 10_000


@dataclass(frozen=True, slots=True, order=True)
class BoardKey:
    tenant_id: str
    board_id: str
    window: str


@dataclass(frozen=True, slots=True)
class Standing:
    subject: str
    units: int  # score times SCALE
    reached_us: int  # when the subject reached this score, µs since the Unix epoch (≥ 0)


@dataclass(frozen=True, slots=True)
class Ranked:
    rank: int  # 1-based
    subject: str
    units: int
    reached_us: int


class Change(NamedTuple):
    """A subject's new standing in a window; ``listed=False`` removes it (below the board's
    minimum, or no score left). A named tuple: the projector makes one per changed score."""

    key: BoardKey
    subject: str
    units: int
    reached_us: int
    listed: bool = True


class Projection(Protocol):
    def apply(self, changes: Sequence[Change], cursor: int) -> None:
        """Set the standings (absolute, idempotent) and record ``cursor`` as the SQL position
        they reflect. Changes for one subject and key apply in order (the last one wins)."""
        ...

    def cursor(self) -> int:
        """The SQL position the projection reflects; 0 when empty or lost."""
        ...

    def top(self, key: BoardKey, offset: int, limit: int) -> list[Ranked]: ...

    def page(self, key: BoardKey, offset: int, limit: int) -> tuple[list[Ranked], int, int]:
        """``top`` with the window's size and version, read together (one round trip)."""
        ...

    def standing(self, key: BoardKey, subject: str) -> Ranked | None: ...

    def standings(self, pairs: Sequence[tuple[BoardKey, str]]) -> list[Ranked | None]:
        """Several lookups in one round trip (a player's ranks across boards)."""
        ...

    def around(self, key: BoardKey, subject: str, k: int) -> list[Ranked]:
        """Up to ``k`` neighbours above and below the subject, with it; [] if it is absent."""
        ...

    def size(self, key: BoardKey) -> int: ...

    def version(self, key: BoardKey) -> int:
        """Changes whenever the window's standings change (for ETags and live streams)."""
        ...

    def keys(self) -> list[BoardKey]:
        """Every window held, in order."""
        ...

    def entries(self, key: BoardKey) -> dict[str, tuple[int, int]]:
        """The whole window, subject -> (units, reached_us): for reconciliation."""
        ...

    def replace(self, key: BoardKey, standings: Iterable[Standing]) -> None:
        """Load or repair a window wholesale."""
        ...

    def drop(self, key: BoardKey) -> None:
        """Forget a window (closed and archived in SQL)."""
        ...

    def reset(self, cursor: int = 0) -> None:
        """Forget every window and set the cursor (a rebuild starts here)."""
        ...


class AsyncReads(Protocol):
    """The hot reads as coroutines, for an adapter whose reads are network round trips: an
    API process then answers them on its event loop, without a thread per request."""

    async def page_async(
        self, key: BoardKey, offset: int, limit: int
    ) -> tuple[list[Ranked], int, int]: ...

    async def around_async(self, key: BoardKey, subject: str, k: int) -> tuple[list[Ranked], int]:
        """``around`` and the window's version."""
        ...
