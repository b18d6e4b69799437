"""The projection contract: every adapter ranks, pages and versions a window alike."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from plaudit.leaderboards.ports import BoardKey, Change, Projection, Ranked, Standing
from plaudit.leaderboards.redis import CHUNK, PART, RedisProjection
from tests.support.redis_keys import REDIS_URL, delete_prefix, unique_prefix

KEY = BoardKey("acme", "xp", "2026-W23")
ODD_SUBJECTS = ["a:b", "a b", " ", "", "ü", "日本語", "a/b", "a\x00b", "🏆", "x" * 200, "*?[]\\"]


def put(key: BoardKey, subject: str, units: int, reached_us: int = 0) -> Change:
    return Change(key, subject, units, reached_us)


def gone(key: BoardKey, subject: str) -> Change:
    return Change(key, subject, 0, 0, listed=False)


def names(ranked: list[Ranked]) -> list[tuple[int, str]]:
    return [(r.rank, r.subject) for r in ranked]


def test_a_fresh_projection_is_empty_at_cursor_zero(projection: Projection) -> None:
    assert projection.cursor() == 0
    assert projection.keys() == []
    assert projection.top(KEY, 0, 10) == []
    assert projection.size(KEY) == 0
    assert projection.version(KEY) == 0
    assert projection.entries(KEY) == {}


def test_ranks_are_one_based_and_dense_with_the_highest_score_first(
    projection: Projection,
) -> None:
    projection.apply([put(KEY, "c", 10), put(KEY, "a", 30), put(KEY, "b", 20)], 1)

    assert projection.top(KEY, 0, 10) == [
        Ranked(1, "a", 30, 0),
        Ranked(2, "b", 20, 0),
        Ranked(3, "c", 10, 0),
    ]
    assert projection.size(KEY) == 3


def test_equal_scores_go_to_whoever_reached_them_first_then_by_subject(
    projection: Projection,
) -> None:
    projection.apply(
        [
            put(KEY, "late", 50, reached_us=300),
            put(KEY, "bob", 50, reached_us=100),
            put(KEY, "alice", 50, reached_us=100),
            put(KEY, "early", 50, reached_us=99),
            put(KEY, "low", 49, reached_us=1),
            put(KEY, "high", 51, reached_us=10**15),
        ],
        1,
    )

    assert names(projection.top(KEY, 0, 10)) == [
        (1, "high"),
        (2, "early"),
        (3, "alice"),
        (4, "bob"),
        (5, "late"),
        (6, "low"),
    ]


def test_reached_time_orders_numerically_not_by_its_digits(projection: Projection) -> None:
    projection.apply([put(KEY, "a", 7, reached_us=10), put(KEY, "b", 7, reached_us=9)], 1)

    assert names(projection.top(KEY, 0, 10)) == [(1, "b"), (2, "a")]


def test_negative_scores_rank_below_zero(projection: Projection) -> None:
    projection.apply([put(KEY, "neg", -5), put(KEY, "zero", 0), put(KEY, "pos", 5)], 1)

    assert [(r.subject, r.units) for r in projection.top(KEY, 0, 10)] == [
        ("pos", 5),
        ("zero", 0),
        ("neg", -5),
    ]


def test_scores_are_exact_up_to_two_to_the_fifty_third_units(projection: Projection) -> None:
    projection.apply([put(KEY, "a", 2**53 - 1), put(KEY, "b", 2**53), put(KEY, "c", -(2**53))], 1)

    assert [(r.subject, r.units) for r in projection.top(KEY, 0, 10)] == [
        ("b", 2**53),
        ("a", 2**53 - 1),
        ("c", -(2**53)),
    ]


def test_top_pages_by_offset_and_limit_and_stops_at_the_end(projection: Projection) -> None:
    projection.apply([put(KEY, f"s{i}", 100 - i) for i in range(5)], 1)

    assert names(projection.top(KEY, 0, 2)) == [(1, "s0"), (2, "s1")]
    assert names(projection.top(KEY, 2, 2)) == [(3, "s2"), (4, "s3")]
    assert names(projection.top(KEY, 4, 2)) == [(5, "s4")]
    assert names(projection.top(KEY, 3, 10**30)) == [(4, "s3"), (5, "s4")]
    assert projection.top(KEY, 5, 2) == []
    assert projection.top(KEY, 1000, 10) == []
    assert projection.top(KEY, 10**30, 10) == []  # a forged page cursor
    assert projection.top(KEY, 0, 0) == []


def test_a_negative_offset_or_limit_is_refused(projection: Projection) -> None:
    projection.apply([put(KEY, "a", 1)], 1)

    with pytest.raises(ValueError, match="negative"):
        projection.top(KEY, -1, 2)
    with pytest.raises(ValueError, match="negative"):
        projection.top(KEY, 0, -1)


def test_standing_gives_rank_and_score_and_none_for_an_absent_subject(
    projection: Projection,
) -> None:
    projection.apply([put(KEY, "a", 30, 5), put(KEY, "b", 20, 6)], 1)

    assert projection.standing(KEY, "b") == Ranked(2, "b", 20, 6)
    assert projection.standing(KEY, "nobody") is None
    assert projection.standing(BoardKey("acme", "xp", "other"), "a") is None


def test_standings_looks_up_several_windows_at_once(projection: Projection) -> None:
    other = BoardKey("acme", "coins", "all")
    projection.apply([put(KEY, "a", 30), put(KEY, "b", 20), put(other, "b", 1)], 1)

    assert projection.standings([(KEY, "b"), (other, "b"), (other, "a"), (KEY, "a")]) == [
        Ranked(2, "b", 20, 0),
        Ranked(1, "b", 1, 0),
        None,
        Ranked(1, "a", 30, 0),
    ]
    assert projection.standings([]) == []


def test_around_gives_neighbours_clipped_at_the_top_and_bottom(projection: Projection) -> None:
    projection.apply([put(KEY, f"s{i}", 100 - i) for i in range(7)], 1)

    assert names(projection.around(KEY, "s3", 2)) == [
        (2, "s1"),
        (3, "s2"),
        (4, "s3"),
        (5, "s4"),
        (6, "s5"),
    ]
    assert names(projection.around(KEY, "s0", 2)) == [(1, "s0"), (2, "s1"), (3, "s2")]
    assert names(projection.around(KEY, "s6", 2)) == [(5, "s4"), (6, "s5"), (7, "s6")]
    assert names(projection.around(KEY, "s3", 0)) == [(4, "s3")]
    assert len(projection.around(KEY, "s3", 100)) == 7
    assert len(projection.around(KEY, "s3", 10**30)) == 7
    assert projection.around(KEY, "s3", 1)[1] == Ranked(4, "s3", 97, 0)


def test_around_an_absent_subject_is_empty(projection: Projection) -> None:
    projection.apply([put(KEY, "a", 1)], 1)

    assert projection.around(KEY, "nobody", 3) == []
    assert projection.around(BoardKey("acme", "xp", "none"), "a", 3) == []


def test_an_unlisted_change_removes_the_subject(projection: Projection) -> None:
    projection.apply([put(KEY, "a", 30), put(KEY, "b", 20), put(KEY, "c", 10)], 1)
    projection.apply([gone(KEY, "b"), gone(KEY, "never-there")], 2)

    assert names(projection.top(KEY, 0, 10)) == [(1, "a"), (2, "c")]
    assert projection.standing(KEY, "b") is None
    assert projection.size(KEY) == 2
    assert projection.entries(KEY) == {"a": (30, 0), "c": (10, 0)}


def test_an_unlisted_change_for_an_unknown_window_creates_nothing(
    projection: Projection,
) -> None:
    projection.apply([gone(KEY, "a")], 1)

    assert projection.keys() == []
    assert projection.version(KEY) == 0


def test_applying_the_same_changes_twice_changes_nothing_the_second_time(
    projection: Projection,
) -> None:
    batch = [put(KEY, "a", 30, 1), put(KEY, "b", 30, 2), gone(KEY, "c"), put(KEY, "d", 5, 3)]
    projection.apply(batch, 7)
    state = (projection.top(KEY, 0, 10), projection.entries(KEY), projection.keys())
    version = projection.version(KEY)

    projection.apply(batch, 7)

    assert (projection.top(KEY, 0, 10), projection.entries(KEY), projection.keys()) == state
    assert projection.version(KEY) == version
    assert projection.cursor() == 7


def test_the_last_change_for_a_subject_in_one_batch_wins(projection: Projection) -> None:
    projection.apply(
        [
            put(KEY, "a", 10, 1),
            put(KEY, "a", 40, 2),
            put(KEY, "a", 20, 3),
            put(KEY, "b", 15, 1),
            gone(KEY, "b"),
            gone(KEY, "c"),
            put(KEY, "c", 5, 9),
        ],
        1,
    )

    assert projection.entries(KEY) == {"a": (20, 3), "c": (5, 9)}
    assert names(projection.top(KEY, 0, 10)) == [(1, "a"), (2, "c")]


def test_a_new_reached_time_alone_moves_the_subject(projection: Projection) -> None:
    projection.apply([put(KEY, "a", 10, 5), put(KEY, "b", 10, 6)], 1)
    projection.apply([put(KEY, "a", 10, 7)], 2)

    assert projection.top(KEY, 0, 10) == [Ranked(1, "b", 10, 6), Ranked(2, "a", 10, 7)]
    assert projection.size(KEY) == 2


def test_the_cursor_only_grows(projection: Projection) -> None:
    projection.apply([put(KEY, "a", 1)], 10)
    projection.apply([put(KEY, "b", 1)], 4)
    assert projection.cursor() == 10

    projection.apply([], 12)
    assert projection.cursor() == 12
    projection.apply([], 0)
    assert projection.cursor() == 12
    assert projection.size(KEY) == 2


def test_the_version_changes_when_standings_change_and_only_then(
    projection: Projection,
) -> None:
    projection.apply([put(KEY, "a", 1)], 1)
    first = projection.version(KEY)
    assert first != 0

    projection.apply([put(KEY, "a", 1), gone(KEY, "nobody")], 2)
    assert projection.version(KEY) == first

    projection.apply([put(KEY, "a", 2)], 3)
    second = projection.version(KEY)
    assert second > first

    projection.apply([put(KEY, "a", 2, reached_us=5)], 4)
    third = projection.version(KEY)
    assert third > second

    projection.apply([gone(KEY, "a")], 5)
    assert projection.version(KEY) > third


def test_a_change_in_one_window_leaves_the_other_versions_alone(
    projection: Projection,
) -> None:
    other = BoardKey("acme", "xp", "2026-W24")
    projection.apply([put(KEY, "a", 1), put(other, "a", 1)], 1)
    before = projection.version(other)

    projection.apply([put(KEY, "a", 2), put(other, "a", 1)], 2)

    assert projection.version(other) == before


def test_the_version_keeps_growing_across_drop_and_recreate(projection: Projection) -> None:
    projection.apply([put(KEY, "a", 1)], 1)
    projection.apply([put(KEY, "a", 2)], 2)
    before = projection.version(KEY)

    projection.drop(KEY)
    assert projection.version(KEY) == 0
    projection.apply([put(KEY, "a", 2)], 3)

    assert projection.version(KEY) > before


def test_the_version_keeps_growing_across_replace(projection: Projection) -> None:
    projection.apply([put(KEY, "a", 1)], 1)
    before = projection.version(KEY)

    projection.replace(KEY, [Standing("a", 1, 0)])
    replaced = projection.version(KEY)
    assert replaced > before

    projection.apply([put(KEY, "a", 3)], 2)
    assert projection.version(KEY) > replaced


def test_the_version_never_repeats_after_reset(projection: Projection) -> None:
    projection.apply([put(KEY, "a", 1)], 1)
    before = projection.version(KEY)

    projection.reset()
    projection.apply([put(KEY, "a", 1)], 1)

    assert projection.version(KEY) > before


def test_keys_lists_the_windows_of_every_tenant_and_board_in_order(
    projection: Projection,
) -> None:
    held = [
        BoardKey("zeta", "xp", "all"),
        BoardKey("acme", "xp", "2026-W23"),
        BoardKey("acme", "coins", "2026-06"),
        BoardKey("acme", "xp", "2026-W22"),
        BoardKey("t.1:eu-west", "b_2", "w:3"),
    ]
    projection.apply([put(key, "a", 1) for key in held], 1)
    projection.replace(BoardKey("beta", "xp", "empty"), [])

    assert projection.keys() == sorted([*held, BoardKey("beta", "xp", "empty")])


def test_a_window_emptied_by_changes_is_still_held_until_dropped(
    projection: Projection,
) -> None:
    projection.apply([put(KEY, "a", 1)], 1)
    projection.apply([gone(KEY, "a")], 2)

    assert projection.keys() == [KEY]
    assert projection.size(KEY) == 0
    assert projection.top(KEY, 0, 10) == []

    projection.drop(KEY)
    assert projection.keys() == []


def test_drop_forgets_only_that_window(projection: Projection) -> None:
    other = BoardKey("acme", "xp", "2026-W24")
    projection.apply([put(KEY, "a", 1), put(other, "b", 2)], 5)

    projection.drop(KEY)

    assert projection.keys() == [other]
    assert projection.top(KEY, 0, 10) == []
    assert projection.standing(KEY, "a") is None
    assert projection.size(KEY) == 0
    assert projection.entries(other) == {"b": (2, 0)}
    assert projection.cursor() == 5


def test_entries_round_trip_through_replace(projection: Projection) -> None:
    standings = [Standing(f"s{i}", (i % 3) * 10_000, 1_700_000_000_000_000 + i) for i in range(50)]

    projection.replace(KEY, standings)

    assert projection.entries(KEY) == {s.subject: (s.units, s.reached_us) for s in standings}
    assert projection.size(KEY) == 50
    expected = sorted(standings, key=lambda s: (-s.units, s.reached_us, s.subject))
    assert [r.subject for r in projection.top(KEY, 0, 100)] == [s.subject for s in expected]


def test_replace_replaces_the_window_wholesale(projection: Projection) -> None:
    other = BoardKey("acme", "xp", "2026-W24")
    projection.apply([put(KEY, "old", 100), put(KEY, "kept", 5), put(other, "x", 1)], 3)

    projection.replace(
        KEY, [Standing("kept", 50, 2), Standing("new", 60, 1), Standing("kept", 7, 4)]
    )

    assert projection.entries(KEY) == {"kept": (7, 4), "new": (60, 1)}
    assert projection.standing(KEY, "old") is None
    assert projection.top(KEY, 0, 10) == [Ranked(1, "new", 60, 1), Ranked(2, "kept", 7, 4)]
    assert projection.entries(other) == {"x": (1, 0)}
    assert projection.cursor() == 3

    projection.replace(KEY, [])
    assert projection.entries(KEY) == {}
    assert projection.keys() == [KEY, other]


def test_a_large_replace_loads_every_standing(projection: Projection) -> None:
    standings = [Standing(f"s{i:05}", i % 17, i) for i in range(CHUNK * 2 + 123)]

    projection.replace(KEY, standings)

    assert projection.size(KEY) == len(standings)
    assert projection.entries(KEY) == {s.subject: (s.units, s.reached_us) for s in standings}


def test_reset_forgets_every_window_and_sets_the_cursor(projection: Projection) -> None:
    keys = [KEY, BoardKey("other", "xp", "all")]
    projection.apply([put(key, "a", 1) for key in keys], 40)
    projection.replace(BoardKey("third", "b", "w"), [Standing("z", 1, 1)])

    projection.reset(17)

    assert projection.cursor() == 17
    assert projection.keys() == []
    for key in keys:
        assert projection.top(key, 0, 10) == []
        assert projection.standing(key, "a") is None
        assert projection.size(key) == 0
        assert projection.version(key) == 0

    projection.reset()
    assert projection.cursor() == 0


def test_tenants_boards_and_windows_are_isolated(projection: Projection) -> None:
    # Pairs that a key layout joining ids with ":" would confuse.
    keys = [
        BoardKey("a:b", "c", "w"),
        BoardKey("a", "b:c", "w"),
        BoardKey("a", "b", "c:w"),
        BoardKey("a", "b", "c"),
        BoardKey("b", "b", "c"),
    ]
    projection.apply([put(key, "same", 10 + i) for i, key in enumerate(keys)], 1)

    for i, key in enumerate(keys):
        assert projection.top(key, 0, 10) == [Ranked(1, "same", 10 + i, 0)]
        assert projection.entries(key) == {"same": (10 + i, 0)}
    assert projection.keys() == sorted(keys)

    projection.apply([gone(keys[0], "same")], 2)
    projection.drop(keys[1])
    assert [projection.size(key) for key in keys] == [0, 0, 1, 1, 1]


def test_a_batch_larger_than_one_chunk_applies_fully(projection: Projection) -> None:
    other = BoardKey("acme", "xp", "2026-W24")
    count = CHUNK * 2 + 500
    batch = [put(KEY if i % 2 else other, f"s{i % 1200:04}", i, i) for i in range(count)]
    # A subject listed in the first chunk and removed in the last one.
    batch.insert(0, put(KEY, "leaver", 10**6))
    batch.append(gone(KEY, "leaver"))

    projection.apply(batch, 99)

    expected: dict[BoardKey, dict[str, tuple[int, int]]] = {KEY: {}, other: {}}
    for change in batch:
        expected[change.key][change.subject] = (change.units, change.reached_us)
    del expected[KEY]["leaver"]
    assert projection.entries(KEY) == expected[KEY]
    assert projection.entries(other) == expected[other]
    assert projection.size(KEY) == 600
    assert projection.top(KEY, 0, 1) == [Ranked(1, "s0099", count - 1, count - 1)]
    assert projection.cursor() == 99


def test_subjects_with_odd_characters_round_trip(projection: Projection) -> None:
    projection.apply([put(KEY, subject, 5, 1) for subject in ODD_SUBJECTS], 1)

    assert [r.subject for r in projection.top(KEY, 0, 100)] == sorted(ODD_SUBJECTS)
    assert projection.entries(KEY) == {subject: (5, 1) for subject in ODD_SUBJECTS}
    for rank, subject in enumerate(sorted(ODD_SUBJECTS), 1):
        assert projection.standing(KEY, subject) == Ranked(rank, subject, 5, 1)
    assert projection.standing(KEY, "a") is None  # a prefix of "a:b", "a b" and "a/b"

    projection.apply([gone(KEY, subject) for subject in ODD_SUBJECTS[::2]], 2)
    assert sorted(projection.entries(KEY)) == sorted(ODD_SUBJECTS[1::2])


# --- property: any sequence of changes ends ranked as a plain sort would rank it -------------

SUBJECT_POOL = ["a", "b", "ab", "a b", "ü", "日", "", "z:1"]
WINDOWS = [KEY, BoardKey("acme", "xp", "2026-W24")]

change_strategy = st.builds(
    Change,
    key=st.sampled_from(WINDOWS),
    subject=st.sampled_from(SUBJECT_POOL) | st.text(max_size=4),
    units=st.integers(-3, 3) | st.sampled_from([2**53, 2**53 - 1, -(2**53), 10**12]),
    reached_us=st.integers(0, 3) | st.sampled_from([2**52, 1_780_000_000_000_000]),
    listed=st.booleans() | st.just(True),
)


@settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(batches=st.lists(st.lists(change_strategy, max_size=30), max_size=5))
def test_any_changes_rank_as_a_plain_sort_of_the_final_standings(
    projection: Projection, batches: list[list[Change]]
) -> None:
    projection.reset()  # the fixture is shared by every example
    expected: dict[BoardKey, dict[str, tuple[int, int]]] = {key: {} for key in WINDOWS}
    for cursor, batch in enumerate(batches, 1):
        projection.apply(batch, cursor)
        for change in batch:
            if change.listed:
                expected[change.key][change.subject] = (change.units, change.reached_us)
            else:
                expected[change.key].pop(change.subject, None)

    for key in WINDOWS:
        final = expected[key]
        order = sorted(final, key=lambda subject: (-final[subject][0], final[subject][1], subject))
        ranked = [Ranked(i, s, *final[s]) for i, s in enumerate(order, 1)]
        assert projection.top(key, 0, len(ranked) + 3) == ranked
        assert projection.entries(key) == final
        assert projection.size(key) == len(ranked)
        subjects = {change.subject for batch in batches for change in batch}
        by_subject = {r.subject: r for r in ranked}
        for subject in subjects:
            assert projection.standing(key, subject) == by_subject.get(subject)


def test_an_unreachable_redis_is_a_service_unavailable_error_not_a_crash() -> None:
    from plaudit.errors import ServiceUnavailable

    # Nothing listens on port 1; the client fails to connect at once.
    dead = RedisProjection(redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5))
    with pytest.raises(ServiceUnavailable, match="Redis unreachable"):
        dead.top(KEY, 0, 10)
    with pytest.raises(ServiceUnavailable):
        dead.apply([put(KEY, "a", 1)], 1)


def test_a_page_reads_entries_size_and_version_together(projection: Projection) -> None:
    assert projection.page(KEY, 0, 10) == ([], 0, 0)
    projection.apply([put(KEY, "a", 5, 1), put(KEY, "b", 7, 2), put(KEY, "c", 6, 3)], 1)
    ranked, size, version = projection.page(KEY, 1, 1)
    assert names(ranked) == [(2, "c")]
    assert (size, version) == (3, projection.version(KEY))
    assert projection.page(KEY, 0, 0) == ([], 3, version)
    assert projection.page(KEY, 10**30, 5) == ([], 3, version)


# --- Redis: a batch sent as several parts in a row --------------------------------------------


@pytest.fixture
def redis_parts() -> Iterator[tuple[redis.Redis, RedisProjection, str]]:
    client = redis.Redis.from_url(REDIS_URL)
    client.ping()
    prefix = unique_prefix()
    try:
        yield client, RedisProjection(client, prefix), prefix
    finally:
        delete_prefix(client, prefix)
        client.close()


@pytest.mark.redis
def test_a_part_that_fails_keeps_the_cursor_and_the_batch_applies_again(
    redis_parts: tuple[redis.Redis, RedisProjection, str],
) -> None:
    client, projection, prefix = redis_parts
    broken = BoardKey("acme", "xp", "broken")
    projection.apply([put(KEY, "before", 1)], 5)
    # The window's hash is a string: the part holding its change (the first window of that
    # part) fails there, and the parts after it still run.
    client.set(f"{prefix}lb:m:acme/xp/broken", "not a hash")
    batch = [put(KEY, f"s{i:04}", i, i) for i in range(PART * 3)]
    batch.insert(PART, put(broken, "x", 1))

    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        projection.apply(batch, 9)

    assert projection.cursor() == 5
    lost = range(PART, 2 * PART - 1)  # the broken part's other changes
    expected = {"before"} | {f"s{i:04}" for i in range(PART * 3) if i not in lost}
    assert set(projection.entries(KEY)) == expected
    assert list(client.scan_iter(f"{prefix}lb:applying:*")) == []
    client.delete(f"{prefix}lb:m:acme/xp/broken")
    projection.apply(batch, 9)  # the projector's retry
    assert projection.cursor() == 9
    assert projection.entries(broken) == {"x": (1, 0)}
    # The connection was left clean: a later call reads its own reply.
    assert projection.top(KEY, 0, 1) == [
        Ranked(1, f"s{PART * 3 - 1:04}", PART * 3 - 1, PART * 3 - 1)
    ]


@pytest.mark.redis
def test_parts_are_sent_as_evals_and_leave_no_counter_behind(
    redis_parts: tuple[redis.Redis, RedisProjection, str],
) -> None:
    client, projection, prefix = redis_parts
    client.script_flush()  # parts are EVALs: none is refused NOSCRIPT while a later one runs
    batch = [put(KEY, f"s{i % 300:04}", i, i) for i in range(PART * 4 + 1)]

    projection.apply(batch, 3)

    assert projection.cursor() == 3
    assert projection.entries(KEY) == {c.subject: (c.units, c.reached_us) for c in batch}
    assert list(client.scan_iter(f"{prefix}lb:applying:*")) == []


@pytest.mark.redis
def test_a_projection_in_the_earlier_hex_format_reads_as_empty_until_rebuilt(
    redis_parts: tuple[redis.Redis, RedisProjection, str],
) -> None:
    client, projection, prefix = redis_parts
    client.set(f"{prefix}lb:cursor", 42)
    client.zadd(f"{prefix}lb:z:acme/xp/2026-W23", {f"{5:016x}alice": -10})
    client.hset(f"{prefix}lb:h:acme/xp/2026-W23", "alice", f"{5:016x}")
    client.sadd(f"{prefix}lb:keys", "acme/xp/2026-W23")

    assert projection.cursor() == 0  # so LeaderboardService.start() rebuilds it from SQL
    assert projection.top(KEY, 0, 10) == []
    assert projection.standing(KEY, "alice") is None
    projection.reset(0)  # the rebuild's first step: every earlier key is gone
    assert list(client.scan_iter(f"{prefix}lb:*")) == [f"{prefix}lb:cursor:2".encode()]
    projection.apply([put(KEY, "alice", 10, 5)], 43)
    assert projection.top(KEY, 0, 10) == [Ranked(1, "alice", 10, 5)]
