"""The embedded mode's projection: one sorted list per window, in this process's memory.

An order-statistics list (sortedcontainers) gives rank, top-N and neighbours in O(log n);
a lock keeps readers on API threads from seeing a list the scorer is halfway through changing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from sortedcontainers import SortedList

from plaudit.leaderboards.ports import BoardKey, Change, Ranked, Standing

_SLICE = 100  # changes applied under one hold of the lock
_Entry = tuple[int, int, str]  # (-units, reached_us, subject): ascending = best first


@dataclass
class _Window:
    order: SortedList = field(default_factory=SortedList)
    by_subject: dict[str, _Entry] = field(default_factory=dict)
    version: int = 0

    def put(self, subject: str, units: int, reached_us: int) -> None:
        old = self.by_subject.get(subject)
        new = (-units, reached_us, subject)
        if old == new:
            return
        if old is not None:
            self.order.remove(old)
        self.order.add(new)
        self.by_subject[subject] = new
        self.version += 1

    def remove(self, subject: str) -> None:
        old = self.by_subject.pop(subject, None)
        if old is not None:
            self.order.remove(old)
            self.version += 1

    def ranked(self, index: int) -> Ranked:
        units, reached, subject = self.order[index]
        return Ranked(index + 1, subject, -units, reached)


class MemoryProjection:
    def __init__(self) -> None:
        self._windows: dict[BoardKey, _Window] = {}
        self._cursor = 0
        self._lock = threading.Lock()
        # Versions survive a dropped or replaced window, so an ETag never repeats.
        # Versions are ETags: starting from the clock, a restarted process never repeats one.
        self._epoch = time.time_ns() // 1000

    def apply(self, changes: Sequence[Change], cursor: int) -> None:
        # The lock is taken per slice, not for the whole batch: a reader (on the event loop)
        # waits for at most a slice (~1 ms at 1,000,000 players), not for ~10 ms.
        for start in range(0, len(changes), _SLICE):
            with self._lock:
                for change in changes[start : start + _SLICE]:
                    self._apply_one(change)
        with self._lock:
            self._cursor = max(self._cursor, cursor)

    def _apply_one(self, change: Change) -> None:
        window = self._windows.get(change.key)
        if window is None:
            if not change.listed:
                return
            window = self._windows[change.key] = self._new_window()
        if change.listed:
            window.put(change.subject, change.units, change.reached_us)
        else:
            window.remove(change.subject)

    def cursor(self) -> int:
        return self._cursor

    def top(self, key: BoardKey, offset: int, limit: int) -> list[Ranked]:
        if offset < 0 or limit < 0:  # a negative index would count from the end
            raise ValueError(f"offset and limit must not be negative: {offset}, {limit}")
        with self._lock:
            window = self._windows.get(key)
            if window is None:
                return []
            end = min(offset + limit, len(window.order))
            return [window.ranked(i) for i in range(offset, end)]

    def page(self, key: BoardKey, offset: int, limit: int) -> tuple[list[Ranked], int, int]:
        if offset < 0 or limit < 0:
            raise ValueError(f"offset and limit must not be negative: {offset}, {limit}")
        with self._lock:
            window = self._windows.get(key)
            if window is None:
                return [], 0, 0
            end = min(offset + limit, len(window.order))
            ranked = [window.ranked(i) for i in range(offset, end)]
            return ranked, len(window.order), window.version

    def standing(self, key: BoardKey, subject: str) -> Ranked | None:
        with self._lock:
            return self._standing(key, subject)

    def _standing(self, key: BoardKey, subject: str) -> Ranked | None:
        window = self._windows.get(key)
        entry = window.by_subject.get(subject) if window else None
        if window is None or entry is None:
            return None
        return Ranked(window.order.index(entry) + 1, subject, -entry[0], entry[1])

    def standings(self, pairs: Sequence[tuple[BoardKey, str]]) -> list[Ranked | None]:
        with self._lock:
            return [self._standing(key, subject) for key, subject in pairs]

    def around(self, key: BoardKey, subject: str, k: int) -> list[Ranked]:
        with self._lock:
            me = self._standing(key, subject)
            if me is None:
                return []
            window = self._windows[key]
            start = max(0, me.rank - 1 - k)
            end = min(len(window.order), me.rank + k)
            return [window.ranked(i) for i in range(start, end)]

    def size(self, key: BoardKey) -> int:
        window = self._windows.get(key)
        return 0 if window is None else len(window.order)

    def version(self, key: BoardKey) -> int:
        window = self._windows.get(key)
        return 0 if window is None else window.version

    def keys(self) -> list[BoardKey]:
        with self._lock:
            return sorted(self._windows)

    def entries(self, key: BoardKey) -> dict[str, tuple[int, int]]:
        with self._lock:
            window = self._windows.get(key)
            if window is None:
                return {}
            return {s: (-e[0], e[1]) for s, e in window.by_subject.items()}

    def replace(self, key: BoardKey, standings: Iterable[Standing]) -> None:
        by_subject = {s.subject: (-s.units, s.reached_us, s.subject) for s in standings}
        order = SortedList(by_subject.values())
        with self._lock:  # the epoch too: two windows must never share a version
            window = self._new_window()
            window.by_subject, window.order = by_subject, order
            self._windows[key] = window

    def drop(self, key: BoardKey) -> None:
        with self._lock:
            self._windows.pop(key, None)

    def reset(self, cursor: int = 0) -> None:
        with self._lock:
            self._windows.clear()
            self._cursor = cursor

    def _new_window(self) -> _Window:
        # Each new window starts its version far above any earlier window's under that key.
        self._epoch += 1
        return _Window(version=self._epoch << 32)
