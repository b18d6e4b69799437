"""Identifiers: a type prefix, then 128 bits in hex: 48 of time (ms), 80 random.

Random enough not to be guessed, time-ordered so that new rows land at the end of an index.
Hex rather than base32: ``bytes.hex`` runs in C, and ingestion makes one id per event.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator


def new_id(prefix: str) -> str:
    millis = time.time_ns() // 1_000_000
    return f"{prefix}_{millis:012x}{os.urandom(10).hex()}"


def new_ids(prefix: str, count: int) -> Iterator[str]:
    """``count`` new ids, their random parts from one read of the system's source: ingestion
    names every event of a batch, and a read per id (a system call each) took half of
    ``new_id``'s time (2.0 µs an id alone, 1.1 in a batch of 1,000)."""
    millis = time.time_ns() // 1_000_000
    random = os.urandom(10 * count).hex()
    return (f"{prefix}_{millis:012x}{random[i : i + 20]}" for i in range(0, 20 * count, 20))
