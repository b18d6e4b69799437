"""Token buckets through the rate-limit port, over each adapter (memory, Redis): a bucket gives
its burst, refills at its rate, never allows more than burst + rate * elapsed, takes atomically
under contention, and is forgotten only when forgetting it changes nothing."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from itertools import count

import pytest
import redis
import redis.asyncio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry as SyncRetry

from plaudit.errors import ServiceUnavailable
from plaudit.ratelimit.memory import MemoryRateLimiter
from plaudit.ratelimit.ports import Decision, Limit, RateLimiter, parse_limit
from plaudit.ratelimit.redis import RedisRateLimiter
from tests.support.redis_keys import REDIS_URL, delete_prefix, unique_prefix

FIVE = Limit("five", rate=1.0, burst=5)
TEN = Limit("ten", rate=1.0, burst=10)
TWO_A_SECOND = Limit("two", rate=2.0, burst=4)


class Ticker:
    """A monotonic clock (seconds) the test moves by hand. Its values are exact in binary, so
    both adapters' arithmetic is exact too."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class RunningTicker(Ticker):
    """A clock that runs with real time and can be moved ahead by hand: Redis expires keys in
    real time, so a test clock slower than real time could see a bucket vanish early."""

    def __init__(self, start: float = 1000.0) -> None:
        super().__init__(start)
        self._started = time.monotonic()
        self.last_read = start  # what the limiter saw on its last take

    def __call__(self) -> float:
        self.last_read = self.now + (time.monotonic() - self._started)
        return self.last_read


@dataclass
class Backend:
    limiter: RateLimiter
    clock: Ticker
    client: redis.Redis | None = None  # set for Redis
    prefix: str = ""

    def another(
        self, clock: Callable[[], float], aio: redis.asyncio.Redis | None = None
    ) -> RateLimiter:
        """A limiter of the same kind (for Redis, on the same keys) with another clock."""
        if self.client is None:
            return MemoryRateLimiter(clock=clock)
        return RedisRateLimiter(self.client, self.prefix, aio=aio, clock=clock)


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    clock = Ticker()
    if request.param == "memory":
        yield Backend(MemoryRateLimiter(clock=clock), clock)
        return
    client = redis.Redis.from_url(REDIS_URL)
    client.ping()  # an unreachable Redis fails the setup once, not the test and its teardown
    prefix = unique_prefix()
    try:
        yield Backend(RedisRateLimiter(client, prefix, clock=clock), clock, client, prefix)
    finally:
        delete_prefix(client, prefix)
        client.close()


@pytest.fixture
def shared_redis() -> Iterator[tuple[redis.Redis, str]]:
    """A client and a key prefix of the test's own, for the Redis adapter's own promises."""
    client = redis.Redis.from_url(REDIS_URL)
    client.ping()
    prefix = unique_prefix()
    try:
        yield client, prefix
    finally:
        delete_prefix(client, prefix)
        client.close()


def test_a_fresh_key_allows_a_whole_burst_then_refuses(backend: Backend) -> None:
    decisions = [backend.limiter.take("k", FIVE) for _ in range(6)]

    assert [d.allowed for d in decisions] == [True] * 5 + [False]
    assert [d.remaining for d in decisions] == [4, 3, 2, 1, 0, 0]
    assert decisions[0] == Decision(True, FIVE, remaining=4, reset_after=1.0, retry_after=0.0)
    assert decisions[-1] == Decision(False, FIVE, remaining=0, reset_after=5.0, retry_after=1.0)


def test_a_bucket_refills_at_its_rate_up_to_its_burst(backend: Backend) -> None:
    take, clock = backend.limiter.take, backend.clock
    for _ in range(4):
        emptied = take("k", TWO_A_SECOND)
    assert emptied == Decision(True, TWO_A_SECOND, 0, reset_after=2.0, retry_after=0.0)

    clock.advance(0.25)  # half a token
    assert take("k", TWO_A_SECOND) == Decision(False, TWO_A_SECOND, 0, 1.75, retry_after=0.25)
    clock.advance(0.25)
    assert take("k", TWO_A_SECOND) == Decision(True, TWO_A_SECOND, 0, 2.0, 0.0)
    clock.advance(1.0)  # two tokens
    assert take("k", TWO_A_SECOND) == Decision(True, TWO_A_SECOND, 1, 1.5, 0.0)
    clock.advance(3600.0)  # capped at the burst, not 7,201 tokens
    assert take("k", TWO_A_SECOND) == Decision(True, TWO_A_SECOND, 3, 0.5, 0.0)


def test_a_take_may_cost_several_tokens_and_never_more_than_the_burst(backend: Backend) -> None:
    take, clock = backend.limiter.take, backend.clock
    assert take("k", TEN, 4) == Decision(True, TEN, 6, reset_after=4.0, retry_after=0.0)
    assert take("k", TEN, 7) == Decision(False, TEN, 6, reset_after=4.0, retry_after=1.0)
    assert take("k", TEN, 6) == Decision(True, TEN, 0, reset_after=10.0, retry_after=0.0)

    clock.advance(100.0)
    too_big = take("k", TEN, 11)  # no wait would ever help
    assert too_big == Decision(False, TEN, 10, reset_after=0.0, retry_after=math.inf)
    assert take("k", TEN, 10) == Decision(True, TEN, 0, reset_after=10.0, retry_after=0.0)


def test_a_take_of_nothing_reads_the_bucket_without_changing_it(backend: Backend) -> None:
    take, clock = backend.limiter.take, backend.clock
    assert take("k", FIVE, 0) == Decision(True, FIVE, 5, 0.0, 0.0)
    take("k", FIVE, 3)
    clock.advance(1.5)  # 3.5 tokens: whole tokens are reported
    assert take("k", FIVE, 0) == Decision(True, FIVE, 3, reset_after=1.5, retry_after=0.0)
    assert take("k", FIVE, 0) == Decision(True, FIVE, 3, reset_after=1.5, retry_after=0.0)


def test_a_negative_or_fractional_cost_is_refused_as_a_programming_error(
    backend: Backend,
) -> None:
    with pytest.raises(ValueError, match="non-negative integer"):
        backend.limiter.take("k", FIVE, -1)
    with pytest.raises(ValueError, match="non-negative integer"):
        backend.limiter.take("k", FIVE, 1.5)  # type: ignore[arg-type]
    assert backend.limiter.take("k", FIVE).remaining == 4  # nothing was taken


def test_keys_have_independent_buckets(backend: Backend) -> None:
    take = backend.limiter.take
    assert take("alice", FIVE, 5).remaining == 0
    assert not take("alice", FIVE).allowed
    assert take("bob", FIVE) == Decision(True, FIVE, 4, 1.0, 0.0)
    assert take("alice:2", FIVE).remaining == 4


def test_a_refused_take_consumes_nothing(backend: Backend) -> None:
    take, clock = backend.limiter.take, backend.clock
    take("k", FIVE, 5)
    clock.advance(0.5)
    for _ in range(10):
        assert take("k", FIVE) == Decision(False, FIVE, 0, reset_after=4.5, retry_after=0.5)
    clock.advance(0.5)  # exactly when the first refusal said
    assert take("k", FIVE) == Decision(True, FIVE, 0, reset_after=5.0, retry_after=0.0)
    assert take("k", FIVE).retry_after == 1.0


def test_a_take_short_by_a_hair_is_refused_and_waits_that_hair(backend: Backend) -> None:
    take, clock = backend.limiter.take, backend.clock
    take("k", FIVE, 5)
    clock.advance(0.999)
    short = take("k", FIVE)
    assert (short.allowed, short.remaining) == (False, 0)
    assert short.retry_after == pytest.approx(0.001, abs=1e-9)


def test_float_noise_in_a_refill_refuses_nothing(backend: Backend) -> None:
    seven_an_hour = parse_limit("7/h", burst=1)
    backend.limiter.take("k", seven_an_hour)
    # 3600/7 s later one token is due; in floats the refill comes to 0.9999999999999999
    # (memory) or 0.99999999944 (Redis, whole µs).
    backend.clock.advance(3600 / 7)
    due = backend.limiter.take("k", seven_an_hour)
    assert (due.allowed, due.remaining, due.retry_after) == (True, 0, 0.0)
    assert due.reset_after == pytest.approx(3600 / 7)


def test_reset_after_is_the_time_until_the_bucket_is_full(backend: Backend) -> None:
    take, clock = backend.limiter.take, backend.clock
    assert [take("k", TWO_A_SECOND).reset_after for _ in range(3)] == [0.5, 1.0, 1.5]
    clock.advance(1.0)
    assert take("k", TWO_A_SECOND, 0).reset_after == 0.5
    clock.advance(0.5)
    assert take("k", TWO_A_SECOND, 0) == Decision(True, TWO_A_SECOND, 4, 0.0, 0.0)


def test_a_lowered_burst_caps_a_bucket_that_holds_more(backend: Backend) -> None:
    take = backend.limiter.take
    take("k", TEN, 2)  # 8 tokens
    smaller = Limit("ten", rate=1.0, burst=5)
    assert take("k", smaller) == Decision(True, smaller, 4, reset_after=1.0, retry_after=0.0)


def test_a_clock_that_steps_back_refills_nothing_then_or_later(backend: Backend) -> None:
    take, clock = backend.limiter.take, backend.clock
    take("k", FIVE, 4)
    clock.advance(-10.0)
    assert take("k", FIVE) == Decision(True, FIVE, 0, reset_after=5.0, retry_after=0.0)
    assert take("k", FIVE) == Decision(False, FIVE, 0, reset_after=5.0, retry_after=1.0)
    clock.advance(10.5)  # measured from the latest time seen, not from the step back
    assert take("k", FIVE) == Decision(False, FIVE, 0, reset_after=4.5, retry_after=0.5)


def test_fifty_threads_share_a_bucket_of_twenty_exactly(backend: Backend) -> None:
    def yielding_clock() -> float:
        time.sleep(0.0001)  # another thread runs in the middle of a take: only a lock stops it
        return backend.clock()

    limiter = backend.another(yielding_clock)
    limit = Limit("contended", rate=0.01, burst=20)
    start = threading.Barrier(50)
    allowed: list[bool] = []

    def client() -> None:
        start.wait()
        allowed.append(limiter.take("shared", limit).allowed)

    threads = [threading.Thread(target=client) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(allowed) == 50
    assert allowed.count(True) == 20


def test_any_sequence_of_takes_decides_as_an_exact_bucket_and_within_the_bound(
    backend: Backend,
) -> None:
    """Against a token bucket in exact fractions: each decision agrees (unless the tokens lie
    within ``band`` of the deciding value), and the total allowed never exceeds
    burst + rate * elapsed."""
    keys = count()
    clock = RunningTicker()
    limiter = backend.another(clock)
    # Redis keeps time in whole µs: at most 1 µs off, at up to 20 tokens a second.
    band = 1e-4

    @settings(
        max_examples=300 if backend.client is None else 30,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture],
    )
    @given(
        rate=st.floats(0.1, 20.0),
        burst=st.integers(1, 20),
        steps=st.lists(st.tuples(st.floats(0.0, 5.0), st.integers(0, 25)), min_size=1, max_size=40),
    )
    def check(rate: float, burst: int, steps: list[tuple[float, int]]) -> None:
        limit = Limit("p", rate, burst)
        key = f"p{next(keys)}"
        exact_rate = Fraction(rate)
        tokens, last = Fraction(burst), None  # the reference bucket
        first: float | None = None
        spent = 0
        for dt, cost in steps:
            clock.advance(dt)
            decision = limiter.take(key, limit, cost)
            now = Fraction(clock.last_read)
            if last is not None:
                tokens = min(Fraction(burst), tokens + max(Fraction(0), now - last) * exact_rate)
            last = now if last is None else max(last, now)
            first = clock.last_read if first is None else first

            if abs(tokens - cost) > band:
                assert decision.allowed == (tokens >= cost)
            if decision.allowed:
                spent += cost
                tokens = max(Fraction(0), tokens - cost)
            elif cost > burst:
                assert decision.retry_after == math.inf
            else:
                assert decision.retry_after == pytest.approx(
                    float((cost - tokens) / exact_rate), abs=band
                )
            if abs(tokens - round(tokens)) > band:
                assert decision.remaining == math.floor(tokens)
            assert decision.reset_after == pytest.approx(
                float((burst - tokens) / exact_rate), abs=band
            )
            assert spent <= burst + rate * (clock.last_read - first) + band

    check()


@pytest.mark.anyio
async def test_the_async_path_decides_as_the_sync_one(backend: Backend) -> None:
    aio = None if backend.client is None else redis.asyncio.Redis.from_url(REDIS_URL)
    limiter = backend.another(backend.clock, aio)
    steps = [(0.0, 1), (0.0, 7), (0.0, 3), (0.5, 1), (0.25, 2), (3.0, 4), (0.0, 0), (0.0, 11)]
    try:
        sync, in_loop = [], []
        for dt, cost in steps:
            backend.clock.advance(dt)
            sync.append(limiter.take("sync", TEN, cost))
            in_loop.append(await limiter.take_async("async", TEN, cost))
    finally:
        if aio is not None:
            await aio.aclose()

    assert in_loop == sync
    assert [d.allowed for d in sync] == [True, True, False, True, False, True, True, False]


@pytest.mark.anyio
async def test_several_takes_at_once_decide_each_in_turn_as_alone(backend: Backend) -> None:
    """A request checked against two limits asks once; each bucket decides as if taken alone,
    in order (the same bucket twice sees the first take)."""
    aio = None if backend.client is None else redis.asyncio.Redis.from_url(REDIS_URL)
    limiter = backend.another(backend.clock, aio)
    rounds = [
        (0.0, [("a", FIVE, 3), ("b", TWO_A_SECOND, 4)]),
        (0.0, [("a", FIVE, 2), ("b", TWO_A_SECOND, 1)]),
        (0.0, [("a", FIVE, 1), ("a", FIVE, 0), ("b", TWO_A_SECOND, 0)]),
        (0.5, [("b", TWO_A_SECOND, 1), ("b", TWO_A_SECOND, 1), ("a", FIVE, 1)]),
        (2.0, [("a", FIVE, 2), ("b", TWO_A_SECOND, 9), ("a", FIVE, 1)]),
    ]
    try:
        together, alone = [], []
        for dt, takes in rounds:
            backend.clock.advance(dt)
            together += await limiter.take_each_async([(f"t{k}", lim, c) for k, lim, c in takes])
            alone += [limiter.take(f"s{k}", lim, c) for k, lim, c in takes]
        assert await limiter.take_each_async([]) == []
    finally:
        if aio is not None:
            await aio.aclose()

    assert together == alone
    assert [d.allowed for d in together] == [
        *(True, True),
        *(True, False),
        *(False, True, True),
        *(True, False, False),  # a holds half a token
        *(True, False, False),  # 9 is more than b's burst
    ]


def test_memory_stays_bounded_and_drops_full_buckets_first() -> None:
    clock = Ticker()
    limiter = MemoryRateLimiter(clock=clock, max_keys=4)
    slow = Limit("slow", rate=0.001, burst=5)
    fast = Limit("fast", rate=10.0, burst=5)
    assert limiter.take("debtor", slow, 5).remaining == 0
    for key in "abc":
        limiter.take(key, fast, 3)
    assert len(limiter) == 4

    clock.advance(1.0)  # a, b and c are full again; the debtor is not
    for key in "def":
        limiter.take(key, fast)
    assert len(limiter) == 4  # a, b and c made room

    assert limiter.take("debtor", slow) == Decision(False, slow, 0, 4999.0, 999.0)
    # A dropped full bucket answers as a kept one would have.
    assert limiter.take("d", fast, 0) == Decision(True, fast, 4, 0.1, 0.0)
    assert len(limiter) == 4


def test_memory_forgets_the_least_recently_used_only_when_nothing_is_full() -> None:
    clock = Ticker()
    limiter = MemoryRateLimiter(clock=clock, max_keys=10)
    slow = Limit("slow", rate=0.001, burst=5)
    for i in range(1000):
        limiter.take(f"k{i}", slow, 5)
        assert len(limiter) <= 10
    # The most recent keys keep their debt; the oldest start over (lenient, never stricter).
    assert not limiter.take("k999", slow).allowed
    assert limiter.take("k0", slow).allowed


@pytest.mark.redis
def test_redis_keeps_a_bucket_as_a_hash_that_expires_when_it_would_be_full(
    shared_redis: tuple[redis.Redis, str],
) -> None:
    client, prefix = shared_redis
    clock = Ticker()
    limiter = RedisRateLimiter(client, prefix, clock=clock)
    limit = Limit("ttl", rate=2.0, burst=10)

    assert limiter.take("k", limit, 3).reset_after == 1.5
    stored = f"{prefix}rl:k"
    assert client.hgetall(stored) == {b"tokens": b"7", b"at": b"1000000000"}
    assert 1000 < client.pttl(stored) <= 1500

    limiter.take("absent", limit, 0)  # a full bucket is not stored
    assert client.exists(f"{prefix}rl:absent") == 0

    fast = Limit("fast", rate=100.0, burst=2)  # full again 20 ms after emptied
    limiter.take("idle", fast, 2)
    assert 0 < client.pttl(f"{prefix}rl:idle") <= 20
    deadline = time.monotonic() + 2.0
    while client.exists(f"{prefix}rl:idle") and time.monotonic() < deadline:
        time.sleep(0.01)
    assert client.exists(f"{prefix}rl:idle") == 0


@pytest.mark.redis
def test_redis_without_a_clock_uses_its_own_time_for_every_process(
    shared_redis: tuple[redis.Redis, str],
) -> None:
    client, prefix = shared_redis
    other = redis.Redis.from_url(REDIS_URL)  # a second API process
    try:
        first, second = RedisRateLimiter(client, prefix), RedisRateLimiter(other, prefix)
        daily = Limit("daily", rate=3 / 86_400, burst=3)
        decisions = [limiter.take("k", daily) for limiter in (first, second, first, second)]
    finally:
        other.close()

    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert 86_400 / 3 - 60 < decisions[-1].retry_after <= 86_400 / 3
    seconds, micros = client.time()
    at = int(client.hget(f"{prefix}rl:k", "at") or 0)
    assert 0 <= seconds * 1_000_000 + micros - at < 60_000_000


@pytest.mark.redis
@pytest.mark.anyio
async def test_redis_without_an_asyncio_client_takes_on_a_thread(
    shared_redis: tuple[redis.Redis, str],
) -> None:
    client, prefix = shared_redis
    limiter = RedisRateLimiter(client, prefix, clock=Ticker())
    assert await limiter.take_async("k", FIVE, 2) == Decision(True, FIVE, 3, 2.0, 0.0)
    assert limiter.take("k", FIVE, 0).remaining == 3


@pytest.mark.anyio
async def test_an_unreachable_redis_is_a_service_unavailable_error_not_a_crash() -> None:
    # Nothing listens on port 1; the clients fail to connect at once, and (unlike redis-py's
    # default of three retries with backoff, ~4 s) give up at once.
    dead = redis.Redis(
        host="127.0.0.1", port=1, socket_connect_timeout=0.5, retry=SyncRetry(NoBackoff(), 0)
    )
    aio = redis.asyncio.Redis(
        host="127.0.0.1", port=1, socket_connect_timeout=0.5, retry=AsyncRetry(NoBackoff(), 0)
    )
    limiter = RedisRateLimiter(dead, "plaudit-test:", aio=aio)
    try:
        with pytest.raises(ServiceUnavailable, match="rate limits: Redis unreachable"):
            limiter.take("k", FIVE)
        with pytest.raises(ServiceUnavailable, match="rate limits: Redis unreachable"):
            await limiter.take_async("k", FIVE)
    finally:
        await aio.aclose()
        dead.close()
