from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

import pytest

from plaudit.domain.auth import (
    ROLES,
    Principal,
    Role,
    Scope,
    generate_key,
    hash_key,
    parse_scopes,
    scopes_of_roles,
)
from plaudit.domain.events import IncomingEvent, check_occurred_at, first_occurrences
from plaudit.domain.ids import new_id, new_ids
from plaudit.domain.pagination import decode_cursor, encode_cursor
from plaudit.domain.players import Identity, PlayerRef, apply_merge_patch, merged_attributes
from plaudit.errors import InvalidInput

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
SKEW = timedelta(minutes=15)


def test_an_event_time_without_zone_is_refused() -> None:
    problem = check_occurred_at(datetime(2026, 6, 1, 12), NOW, SKEW)
    assert problem is not None
    assert "time zone" in problem


def test_event_times_in_the_past_and_within_the_skew_are_fine() -> None:
    assert check_occurred_at(NOW - timedelta(days=3650), NOW, SKEW) is None
    assert check_occurred_at(NOW + SKEW, NOW, SKEW) is None
    assert check_occurred_at(NOW.astimezone(timezone(timedelta(hours=9))), NOW, SKEW) is None


def test_an_event_time_beyond_the_skew_is_refused() -> None:
    problem = check_occurred_at(NOW + SKEW + timedelta(seconds=1), NOW, SKEW)
    assert problem is not None
    assert "future" in problem


def _event(key: str, source: str = "lms") -> IncomingEvent:
    return IncomingEvent(key, source, "t", "a", NOW)


def test_first_occurrences_marks_repeats_of_the_same_source_and_key() -> None:
    events = [_event("1"), _event("2"), _event("1"), _event("1", "crm")]
    assert first_occurrences(events) == [True, True, False, True]


def test_ids_carry_their_prefix_and_sort_by_creation() -> None:
    ids = [new_id("plr") for _ in range(200)]
    assert all(i.startswith("plr_") and len(i) == 4 + 32 for i in ids)
    assert len(set(ids)) == 200
    # The first 12 characters after the prefix are the millisecond (48 bits); within one
    # millisecond the order is random.
    stamps = [i[4:16] for i in ids]
    assert stamps == sorted(stamps)


def test_ids_made_together_are_ids_as_made_alone() -> None:
    before = new_id("evt")
    ids = list(new_ids("evt", 500))
    assert len(ids) == len(set(ids)) == 500
    assert all(re.fullmatch(r"evt_[0-9a-f]{32}", i) for i in ids)
    assert {i[4:16] for i in ids} == {ids[0][4:16]}
    assert ids[0][4:16] >= before[4:16]
    assert list(new_ids("evt", 0)) == []


def test_player_refs_are_ids_or_source_and_external_id() -> None:
    assert PlayerRef.parse("plr_abc") == PlayerRef(player_id="plr_abc")
    assert PlayerRef.parse("lms:a:b") == PlayerRef(identity=Identity("lms", "a:b"))
    for bad in ("alice", "lms:", ":alice", "bad source:x"):
        with pytest.raises(ValueError, match="neither a player id"):
            PlayerRef.parse(bad)


def test_merge_patch_sets_and_removes_attributes() -> None:
    assert apply_merge_patch({"team": "a", "region": "x"}, {"team": "b", "region": None}) == {
        "team": "b"
    }


def test_after_a_merge_the_survivor_attributes_win() -> None:
    assert merged_attributes({"team": "a"}, {"team": "b", "region": "x"}) == {
        "team": "a",
        "region": "x",
    }


def test_cursors_round_trip_and_foreign_cursors_are_refused() -> None:
    assert decode_cursor(encode_cursor("42")) == "42"
    for forged in ("42", "!!!", encode_cursor("x")[:-1] + "*"):
        with pytest.raises(InvalidInput):
            decode_cursor(forged)


def test_admin_allows_the_tenants_work_but_not_its_keys_and_the_owner_allows_all() -> None:
    admin = Principal("t", "k", frozenset({Scope.ADMIN}))
    owner = Principal("t", "k", ROLES[Role.OWNER])
    editor = Principal("t", "k", ROLES[Role.EDITOR])
    reader = Principal("t", "k", frozenset({Scope.READ}))
    # The player scope is a player's own, from their sign-in: no other role holds it.
    assert {s for s in Scope if not owner.allows(s)} == {Scope.PLAYER}
    assert {s for s in Scope if not admin.allows(s)} == {
        Scope.KEYS_WRITE,
        Scope.TENANTS_WRITE,
        Scope.PLAYER,
    }
    assert {s for s in Scope if editor.allows(s)} == {Scope.RULES_WRITE, Scope.READ}
    assert reader.allows(Scope.READ)
    assert not reader.allows(Scope.EVENTS_WRITE)


def test_roles_name_their_scopes_and_unknown_roles_are_refused() -> None:
    assert scopes_of_roles(["viewer", "ingest"]) == {Scope.READ, Scope.EVENTS_WRITE}
    with pytest.raises(ValueError, match="unknown role 'root'"):
        scopes_of_roles(["root"])


def test_unknown_or_missing_scopes_are_refused() -> None:
    assert parse_scopes(["read", "events:write"]) == {Scope.READ, Scope.EVENTS_WRITE}
    with pytest.raises(ValueError, match="unknown scope 'root'"):
        parse_scopes(["root"])
    with pytest.raises(ValueError, match="at least one"):
        parse_scopes([])


def test_keys_are_stored_as_hashes_only() -> None:
    key = generate_key()
    assert key.hash == hash_key(key.secret)
    assert key.secret not in key.hash
    assert key.display_prefix == key.secret[:12]
