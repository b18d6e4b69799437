"""Identifiers: a type prefix, then 128 bits in hex: 48 of time (ms), 80 random.

Random enough not to be guessed, time-ordered so that new rows land at the end of an index.
Hex rather than base32: ``bytes.hex`` runs in C, and ingestion makes one id per event.
"""

from __future__ import annotations

import os
import time


def new_id(prefix: str) -> str:
    millis = time.time_ns() // 1_000_000
    return f"{prefix}_{millis:012x}{os.urandom(10).hex()}"
