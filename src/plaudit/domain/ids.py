"""Identifiers: a type prefix, then 128 bits (48 of time, 80 random) in sortable base32.

Random enough not to be guessed, time-ordered so that new rows land at the end of an index.
"""

from __future__ import annotations

import base64
import os
import time


def new_id(prefix: str) -> str:
    millis = time.time_ns() // 1_000_000
    raw = millis.to_bytes(6, "big") + os.urandom(10)
    # base32hex keeps byte order in character order, so ids sort by creation time.
    return f"{prefix}_{base64.b32hexencode(raw).decode('ascii').rstrip('=').lower()}"
