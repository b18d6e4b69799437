"""Opaque cursors: the caller hands back what we gave, and learns nothing from it."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from plaudit.errors import FieldError, InvalidInput

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: list[T]
    next_cursor: str | None


def encode_cursor(value: str) -> str:
    return base64.urlsafe_b64encode(f"v1:{value}".encode()).decode("ascii").rstrip("=")


def decode_cursor(cursor: str) -> str:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raw = ""
    if not raw.startswith("v1:"):
        raise InvalidInput(
            "cursor is not one this API issued",
            [FieldError("cursor", "not a cursor from a previous page; start without one")],
        )
    return raw[3:]


def decode_position(cursor: str | None) -> int:
    """A cursor over numbered rows (log positions, ledger ids); 0 without one."""
    if not cursor:
        return 0
    value = decode_cursor(cursor)
    if not (value.isascii() and value.isdigit()) or len(value) > 18:  # "²" is a digit too
        raise InvalidInput(
            "cursor is not one this API issued",
            [FieldError("cursor", "not a cursor from a previous page; start without one")],
        )
    return int(value)


def page_of(fetched: list[T], limit: int, key: Callable[[T], object]) -> Page[T]:
    """A page from ``limit + 1`` fetched items: the extra one only says a next page exists."""
    items = fetched[:limit]
    more = len(fetched) > limit
    return Page(items, encode_cursor(str(key(items[-1]))) if more else None)
