"""The hot leaderboard reads build their JSON by hand (orjson): it must be the document the
published response models describe, byte for byte."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from plaudit.api.routes.leaderboards import (
    AroundOut,
    EntryOut,
    StandingsOut,
    WindowOut,
    around_json,
    standings_json,
)
from plaudit.services.leaderboards import Entry, WindowView


def _entries() -> list[Entry]:
    reached = datetime(2026, 6, 1, 9, 30, 0, 123456, tzinfo=UTC)
    return [
        Entry(1, "plr_1", 1234.5678, reached, False),
        Entry(2, None, 30.0, reached.replace(microsecond=0), True),
        Entry(3, 'Équipe rouge "ü" 東', 1e-4, reached + timedelta(days=400), False),
        Entry(4, "plr_4", 12345678901.0, reached, False),
    ]


@pytest.mark.parametrize("zone", [UTC, ZoneInfo("America/New_York"), ZoneInfo("Asia/Kolkata")])
def test_json_built_by_hand_is_the_models_document(zone: object) -> None:
    """The hot reads' orjson bodies byte for byte against the documented response models."""
    start = datetime(2026, 3, 8, 0, 0, tzinfo=zone)  # type: ignore[arg-type]
    for view in (
        WindowView(None, "2026-03-08", "open", start, start + timedelta(days=7)),  # type: ignore[arg-type]
        WindowView(None, "all", "open", None, None),  # type: ignore[arg-type]
    ):
        entries = _entries()
        expected = StandingsOut(
            board="b",
            window=WindowOut.of(view),
            participants=7,
            items=[EntryOut.of(e) for e in entries],
            next_cursor="abc",
        ).model_dump_json()
        assert standings_json("b", view, 7, entries, "abc").decode() == expected
        for who in ("plr_4", "plr_9"):
            mine = next((e for e in entries if e.subject == who), None)
            expected = AroundOut(
                board="b",
                window=WindowOut.of(view),
                subject=who,
                entry=EntryOut.of(mine) if mine else None,
                neighbours=[EntryOut.of(e) for e in entries],
            ).model_dump_json()
            assert around_json("b", view, who, entries).decode() == expected
