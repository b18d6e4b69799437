"""What a process read of players holds while the players' write counter stays where it was,
and within its size."""

from __future__ import annotations

from plaudit.services.players import PlayersCache


def test_entries_hold_per_tenant_while_the_counter_stays() -> None:
    cache: PlayersCache[str, int] = PlayersCache(limit=10)
    cache.check(7)
    cache.put("t1", {"a": 1, "b": 2})
    cache.check(7)
    assert cache.split("t1", ["a", "b", "c"]) == ({"a": 1, "b": 2}, ["c"])
    assert cache.split("t2", ["a"]) == ({}, ["a"])  # another tenant's "a"
    cache.check(8)  # a player was written
    assert cache.split("t1", ["a"]) == ({}, ["a"])
    assert cache.generation == 8


def test_a_full_cache_or_a_forgotten_one_starts_again() -> None:
    cache: PlayersCache[str, int] = PlayersCache(limit=2)
    cache.check(1)
    cache.put("t", {"a": 1, "b": 2, "c": 3})
    cache.check(1)  # more than the limit: forgotten, though nothing was written
    assert cache.split("t", ["a"]) == ({}, ["a"])
    cache.put("t", {"a": 1})
    cache.forget()
    assert cache.generation == -1
    cache.check(1)
    assert cache.split("t", ["a"]) == ({}, ["a"])
