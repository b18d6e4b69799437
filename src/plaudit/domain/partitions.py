"""Partitions of the event log: the unit of parallel scoring in the scale-out mode.

A player's events all fall in one partition (a stable hash of tenant and player), so one
worker at a time scores them, in log order. Sixteen partitions let up to sixteen worker
processes score at once; the number is part of the stored data (each event records its
partition) and does not change.
"""

from __future__ import annotations

from functools import lru_cache
from zlib import crc32

PARTITIONS = 16


@lru_cache(maxsize=1 << 16)  # asked for every event, by ingestion twice: players repeat
def partition_of(tenant_id: str, player_id: str) -> int:
    # crc32, not hash(): the same on every host and every run.
    return crc32(f"{tenant_id}\x00{player_id}".encode()) % PARTITIONS
