"""Webhooks end to end: effects → outbox → deliveries → a real receiver on 127.0.0.1, with
signatures checked by independent implementations, and retries under an injected clock."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import httpx
import orjson
import pytest
from standardwebhooks.webhooks import Webhook as StandardWebhook
from svix.webhooks import Webhook as SvixWebhook

from plaudit.bootstrap import Container
from plaudit.settings import Settings
from plaudit.webhooks.sender import WebhookSender
from plaudit.webhooks.signing import SignatureMismatch, verify
from plaudit.workers.dispatcher import Dispatcher
from tests.api.test_rulesets_and_scoring import _publish
from tests.conftest import FakeClock
from tests.support.events import event
from tests.support.receiver import Answer, Receiver

pytestmark = pytest.mark.anyio


@pytest.fixture
def clock() -> FakeClock:
    # Near the real time: the reference libraries check the signature's timestamp against it.
    return FakeClock(datetime.now(UTC).replace(microsecond=0))


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        _env_file=None,
        webhooks={"allow_loopback": True, "schedule": "0s,5s,1m", "timeout": "PT1S"},
    )


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as running:
        yield running


@pytest.fixture
async def dispatcher(container: Container) -> AsyncIterator[Dispatcher]:
    container.dispatch.jitter = lambda: 0.0
    container.dispatch.cache_ttl = 0.0  # admin changes seen at once (the clock is a fake)
    sender = WebhookSender(timeout=1.0, allow_loopback=True)
    yield Dispatcher(container.dispatch, sender, container.clock)
    await sender.aclose()


async def pump(container: Container, dispatcher: Dispatcher, capacity: int = 64) -> int:
    """Run dispatch rounds until nothing is due now; how many attempts were made."""
    outcomes: list[Any] = []
    made = 0
    while True:
        jobs = container.dispatch.step(outcomes, capacity)
        if not jobs:
            return made
        outcomes = [await dispatcher.attempt(job) for job in jobs]
        made += len(jobs)


async def subscribe(client: httpx.AsyncClient, url: str, **fields: Any) -> dict[str, Any]:
    created = await client.post("/v1/webhooks", json={"url": url, **fields})
    assert created.status_code == 201, created.text
    body: dict[str, Any] = created.json()
    return body


async def scholar(client: httpx.AsyncClient, container: Container) -> None:
    """Alice completes two lessons: 20 xp, the Learner level and the scholar badge."""
    await client.post("/v1/events", json=[event("1"), event("2")])
    container.scoring.score_pending()


async def test_a_badge_and_a_level_reach_the_endpoint_signed_verifiably(
    client: httpx.AsyncClient, container: Container, receiver: Receiver, dispatcher: Dispatcher
) -> None:
    await _publish(client)
    hook = await subscribe(client, receiver.url())
    assert hook["secret"].startswith("whsec_")
    assert "points.awarded" not in hook["event_types"]  # opt-in only
    await scholar(client, container)

    assert await pump(container, dispatcher) == 2
    got = receiver.wait_for(2)
    bodies = [orjson.loads(r.body) for r in got]
    types = sorted(b["type"] for b in bodies)
    assert types == ["badge.awarded", "level.reached"]  # not Novice: everyone starts there
    badge = next(b for b in bodies if b["type"] == "badge.awarded")["data"]
    assert (badge["badge_id"], badge["source"], badge["tier"]) == ("scholar", "rule", None)
    levels = [b["data"] for b in bodies if b["type"] == "level.reached"]
    assert [(v["currency"], v["level"]) for v in levels] == [("xp", "Learner")]
    for r in got:
        assert r.headers["content-type"] == "application/json"
        assert r.headers["webhook-id"].startswith("msg_")
        # Two independent implementations accept our signature; a tampered body fails.
        StandardWebhook(hook["secret"]).verify(r.body, r.headers)
        SvixWebhook(hook["secret"]).verify(r.body, r.headers)
        with pytest.raises(Exception, match=r"[Ss]ignature"):
            StandardWebhook(hook["secret"]).verify(r.body + b" ", r.headers)

    deliveries = (await client.get(f"/v1/webhooks/{hook['id']}/deliveries")).json()["items"]
    assert [(d["status"], d["attempts"]) for d in deliveries] == [("delivered", 1)] * 2
    attempts = (await client.get(f"/v1/webhooks/{hook['id']}/attempts")).json()["items"]
    assert [(a["status_code"], a["response_excerpt"]) for a in attempts] == [(200, "ok")] * 2
    assert all(a["latency_ms"] > 0 for a in attempts)
    assert (await client.get(f"/v1/webhooks/{hook['id']}")).json()["last_success_at"]
    assert await pump(container, dispatcher) == 0  # nothing is sent twice


async def test_points_go_only_to_a_subscription_that_asks_for_them(
    client: httpx.AsyncClient, container: Container, receiver: Receiver, dispatcher: Dispatcher
) -> None:
    await _publish(client)
    await subscribe(client, receiver.url("/badges"), event_types=["badge.awarded"])
    await subscribe(client, receiver.url("/points"), event_types=["points.awarded"])
    await scholar(client, container)
    await pump(container, dispatcher)
    paths = sorted(r.path for r in receiver.received)
    assert paths == ["/badges", "/points", "/points"]
    amounts = [
        orjson.loads(r.body)["data"]["amount"] for r in receiver.received if r.path == "/points"
    ]
    assert amounts == [10.0, 10.0]


async def test_a_filter_selects_messages_and_a_bad_one_is_refused_with_its_position(
    client: httpx.AsyncClient, container: Container, receiver: Receiver, dispatcher: Dispatcher
) -> None:
    await _publish(client)
    bad = await client.post(
        "/v1/webhooks", json={"url": receiver.url(), "filter": "message.data.badge_id =="}
    )
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["field"] == "filter"
    assert "1:" in bad.json()["errors"][0]["message"]
    await subscribe(client, receiver.url("/gold"), filter='message.data.badge_id == "closer"')
    await subscribe(client, receiver.url("/scholar"), filter='message.data.badge_id == "scholar"')
    await scholar(client, container)
    await pump(container, dispatcher)
    assert [r.path for r in receiver.received] == ["/scholar"]


async def test_a_failing_endpoint_is_retried_on_schedule_then_dead_lettered_then_redelivered(
    client: httpx.AsyncClient,
    container: Container,
    dispatcher: Dispatcher,
    clock: FakeClock,
) -> None:
    healthy = False

    def answer(path: str, n: int) -> Answer:
        return Answer(200) if healthy else Answer(500, body=b"database down")

    with Receiver(answer) as receiver:
        await _publish(client)
        hook = await subscribe(client, receiver.url(), event_types=["badge.awarded"])
        await scholar(client, container)
        assert await pump(container, dispatcher) == 1  # attempt 1, at once
        clock.advance(timedelta(seconds=4.9))
        assert await pump(container, dispatcher) == 0  # attempt 2 waits 5 s (jitter 0)
        clock.advance(timedelta(seconds=0.1))
        assert await pump(container, dispatcher) == 1
        clock.advance(timedelta(seconds=59))
        assert await pump(container, dispatcher) == 0
        clock.advance(timedelta(seconds=1))
        assert await pump(container, dispatcher) == 1  # attempt 3, the last of "0s,5s,1m"
        clock.advance(timedelta(days=1))
        assert await pump(container, dispatcher) == 0

        dead = (await client.get(f"/v1/webhooks/{hook['id']}/deliveries?status=dead")).json()
        [letter] = dead["items"]
        assert letter["attempts"] == 3
        assert "HTTP 500" in letter["last_error"]
        assert "3 attempts" in letter["last_error"]
        attempts = (await client.get(f"/v1/webhooks/{hook['id']}/attempts")).json()["items"]
        assert [a["number"] for a in attempts] == [3, 2, 1]
        assert {a["response_excerpt"] for a in attempts} == {"database down"}
        ids = {r.headers["webhook-id"] for r in receiver.received}
        assert len(ids) == 1  # every attempt of a message carries its one webhook-id

        healthy = True
        queued = await client.post(f"/v1/webhooks/{hook['id']}/dead-letters/redeliver")
        assert queued.json() == {"queued": 1}
        assert await pump(container, dispatcher) == 1
        assert receiver.received[-1].headers["webhook-id"] in ids
        delivered = (await client.get(f"/v1/webhooks/{hook['id']}/deliveries")).json()["items"]
        assert [d["status"] for d in delivered] == ["delivered"]
        again = await client.post(f"/v1/webhooks/{hook['id']}/deliveries/{letter['id']}/redeliver")
        assert again.json() == {"queued": 1}  # a delivered message can be sent again by hand
        unknown = await client.post(f"/v1/webhooks/{hook['id']}/deliveries/dlv_nope/redeliver")
        assert unknown.status_code == 404


async def test_gone_disables_the_endpoint_and_the_message_waits_until_it_is_enabled(
    client: httpx.AsyncClient, container: Container, dispatcher: Dispatcher
) -> None:
    gone = True

    def answer(path: str, n: int) -> Answer:
        return Answer(410) if gone else Answer(200)

    with Receiver(answer) as receiver:
        await _publish(client)
        hook = await subscribe(client, receiver.url(), event_types=["badge.awarded"])
        await scholar(client, container)
        assert await pump(container, dispatcher) == 1
        found = (await client.get(f"/v1/webhooks/{hook['id']}")).json()
        assert found["enabled"] is False
        assert "410" in found["disabled_reason"]
        container.clock.advance(timedelta(days=1))  # type: ignore[attr-defined]
        assert await pump(container, dispatcher) == 0  # nothing goes to a disabled endpoint

        gone = False
        enabled = await client.patch(f"/v1/webhooks/{hook['id']}", json={"enabled": True})
        assert enabled.json()["disabled_reason"] is None
        assert await pump(container, dispatcher) == 1
        assert len(receiver.received) == 2


async def test_retry_after_is_honoured_on_429(
    client: httpx.AsyncClient, container: Container, dispatcher: Dispatcher, clock: FakeClock
) -> None:
    def answer(path: str, n: int) -> Answer:
        return Answer(429, headers={"Retry-After": "30"}) if n == 0 else Answer(200)

    with Receiver(answer) as receiver:
        await _publish(client)
        await subscribe(client, receiver.url(), event_types=["badge.awarded"])
        await scholar(client, container)
        assert await pump(container, dispatcher) == 1
        clock.advance(timedelta(seconds=29))  # the schedule says 5 s; the receiver said 30
        assert await pump(container, dispatcher) == 0
        clock.advance(timedelta(seconds=1))
        assert await pump(container, dispatcher) == 1
        assert len(receiver.received) == 2


async def test_a_hanging_receiver_and_a_redirect_are_failed_attempts(
    client: httpx.AsyncClient, container: Container, dispatcher: Dispatcher
) -> None:
    def answer(path: str, n: int) -> Answer:
        if path == "/hang":
            return Answer(hang=True)
        return Answer(302, headers={"Location": "http://127.0.0.1:9/elsewhere"})

    with Receiver(answer) as receiver:
        await _publish(client)
        slow = await subscribe(client, receiver.url("/hang"), event_types=["badge.awarded"])
        moved = await subscribe(client, receiver.url("/moved"), event_types=["badge.awarded"])
        await scholar(client, container)
        assert await pump(container, dispatcher) == 2
        hung = (await client.get(f"/v1/webhooks/{slow['id']}/attempts")).json()["items"]
        assert hung[0]["status_code"] is None
        assert "timed out" in hung[0]["error"] or "timeout" in hung[0]["error"]
        assert 900 <= hung[0]["latency_ms"] < 5000
        redirect = (await client.get(f"/v1/webhooks/{moved['id']}/deliveries")).json()["items"]
        assert (redirect[0]["status"], redirect[0]["last_error"]) == ("pending", "HTTP 302")
        assert [r.path for r in receiver.received].count("/elsewhere") == 0


async def test_a_rotated_secret_and_the_old_one_both_sign_during_the_overlap(
    client: httpx.AsyncClient,
    container: Container,
    receiver: Receiver,
    dispatcher: Dispatcher,
    clock: FakeClock,
) -> None:
    await _publish(client)
    hook = await subscribe(client, receiver.url(), event_types=["badge.awarded", "level.reached"])
    rotated = await client.post(
        f"/v1/webhooks/{hook['id']}/secrets/rotate", json={"overlap": "PT1H"}
    )
    assert rotated.status_code == 200, rotated.text
    new = rotated.json()["secret"]
    secrets = (await client.get(f"/v1/webhooks/{hook['id']}/secrets")).json()
    assert [s["secret"] for s in secrets] == [new, hook["secret"]]

    await client.post("/v1/events", json=[event("1"), event("2")])
    container.scoring.score_pending()
    await pump(container, dispatcher)
    during = receiver.received[0]
    assert len(during.headers["webhook-signature"].split(" ")) == 2
    StandardWebhook(new).verify(during.body, during.headers)
    StandardWebhook(hook["secret"]).verify(during.body, during.headers)

    clock.advance(timedelta(hours=1))
    receiver.received.clear()
    await client.post("/v1/events", json=[event("3", actor="bob"), event("4", actor="bob")])
    container.scoring.score_pending()
    await pump(container, dispatcher)
    after = receiver.received[0]
    assert len(after.headers["webhook-signature"].split(" ")) == 1
    # The clock is an hour ahead of the libraries' now: check with ours, at the clock's time.
    stamp = int(clock.now.timestamp())
    verify(new, after.headers, after.body, now=stamp)
    with pytest.raises(SignatureMismatch):
        verify(hook["secret"], after.headers, after.body, now=stamp)
    too_long = await client.post(
        f"/v1/webhooks/{hook['id']}/secrets/rotate", json={"overlap": "P30D"}
    )
    assert too_long.status_code == 422


async def test_an_ordered_subscription_holds_a_players_later_messages_behind_a_failing_one(
    client: httpx.AsyncClient, container: Container, dispatcher: Dispatcher, clock: FakeClock
) -> None:
    def answer(path: str, n: int) -> Answer:
        return Answer(500) if n == 0 else Answer(200)

    with Receiver(answer) as receiver:
        await _publish(client)
        hook = await subscribe(
            client,
            receiver.url("/ordered"),
            event_types=["badge.awarded", "level.reached", "points.awarded"],
            ordered=True,
        )
        await scholar(client, container)  # 2 points, a level and a badge: 4 messages
        assert await pump(container, dispatcher) == 1  # the first fails; the rest wait
        clock.advance(timedelta(seconds=5))
        assert await pump(container, dispatcher) == 4
        types = [orjson.loads(r.body)["type"] for r in receiver.received]
        seqs = [
            d["message_seq"]
            for d in (await client.get(f"/v1/webhooks/{hook['id']}/deliveries")).json()["items"]
        ]
        assert seqs == sorted(seqs)
        assert types[0] == types[1] == "points.awarded"  # the failed one, then again, in order
        assert len(types) == 5


async def test_max_in_flight_caps_attempts_to_one_endpoint(
    client: httpx.AsyncClient, container: Container, receiver: Receiver
) -> None:
    await _publish(client)
    await subscribe(client, receiver.url(), event_types=["points.awarded"], max_in_flight=3)
    await client.post("/v1/events", json=[event(str(i), actor=f"p{i}") for i in range(10)])
    container.scoring.score_pending()
    first = container.dispatch.step([], 64)
    assert len(first) == 3
    assert container.dispatch.step([], 64) == []  # three under way: the rest wait


async def test_an_endpoint_failing_for_days_is_disabled_and_the_admin_is_told(
    client: httpx.AsyncClient,
    container: Container,
    dispatcher: Dispatcher,
    clock: FakeClock,
    receiver: Receiver,
) -> None:
    def answer(path: str, n: int) -> Answer:
        return Answer(503) if path == "/down" else Answer(200)

    with Receiver(answer) as failing:
        await _publish(client)
        down = await subscribe(client, failing.url("/down"), event_types=["badge.awarded"])
        await subscribe(client, receiver.url("/ops"), event_types=["webhook.endpoint_disabled"])
        await scholar(client, container)
        await pump(container, dispatcher)
        container.dispatch.disable_after = timedelta(minutes=1)
        clock.advance(timedelta(minutes=2))
        await client.post("/v1/events", json=[event("3", actor="bob"), event("4", actor="bob")])
        container.scoring.score_pending()
        await pump(container, dispatcher)
        found = (await client.get(f"/v1/webhooks/{down['id']}")).json()
        assert found["enabled"] is False
        assert "failed since" in found["disabled_reason"]
        told = [orjson.loads(r.body) for r in receiver.received]
        assert [t["type"] for t in told] == ["webhook.endpoint_disabled"]
        assert told[0]["data"]["subscription_id"] == down["id"]


async def test_subscriptions_refuse_unsafe_urls_and_unknown_types_and_can_be_edited(
    client: httpx.AsyncClient, container: Container
) -> None:
    cases: list[dict[str, Any]] = [
        {"url": "http://example.com/hook"},  # http to a public host
        {"url": "https://10.0.0.1/hook"},
        {"url": "https://user:pw@example.com/hook"},
        {"url": "https://example.com/hook", "event_types": ["badge.polished"]},
        {"url": "https://example.com/hook", "event_types": []},
        {"url": "https://example.com/hook", "max_in_flight": 0},
        {"url": "https://example.com/hook", "tenant_id": "other"},  # not a client's to set
    ]
    for body in cases:
        refused = await client.post("/v1/webhooks", json=body)
        assert refused.status_code == 422, (body, refused.text)
        assert refused.headers["content-type"] == "application/problem+json"
    hook = await subscribe(client, "https://example.com/hook", description="CRM")
    edited = await client.patch(
        f"/v1/webhooks/{hook['id']}", json={"event_types": ["level.reached"], "ordered": True}
    )
    assert (edited.json()["event_types"], edited.json()["ordered"]) == (["level.reached"], True)
    assert edited.json()["description"] == "CRM"
    listed = (await client.get("/v1/webhooks")).json()
    assert [h["id"] for h in listed] == [hook["id"]]
    assert "secret" not in listed[0]
    types = (await client.get("/v1/webhooks/event-types")).json()
    assert {t["type"] for t in types} >= {"badge.awarded", "leaderboard.window_closed"}
    assert (await client.delete(f"/v1/webhooks/{hook['id']}")).status_code == 204
    assert (await client.get(f"/v1/webhooks/{hook['id']}")).status_code == 404


async def test_a_replay_tells_nothing_again(
    client: httpx.AsyncClient, container: Container, receiver: Receiver, dispatcher: Dispatcher
) -> None:
    await _publish(client)
    await subscribe(client, receiver.url())
    await scholar(client, container)
    assert await pump(container, dispatcher) == 2
    container.scoring.replay()
    assert await pump(container, dispatcher) == 0
    assert len(receiver.received) == 2


async def test_the_dispatcher_loop_delivers_as_soon_as_scoring_wakes_it(
    client: httpx.AsyncClient, container: Container, receiver: Receiver
) -> None:
    await _publish(client)
    await subscribe(client, receiver.url(), event_types=["badge.awarded"])
    sender = WebhookSender(timeout=1.0, allow_loopback=True)
    # A poll of a minute: only the wake-up can make it deliver within the test's deadline.
    loop = Dispatcher(container.dispatch, sender, container.clock, poll=60.0)
    async with anyio.create_task_group() as tg:
        tg.start_soon(loop.run)
        await anyio.sleep(0.1)  # the first round found nothing and waits
        await scholar(client, container)
        loop.wakeup.set()
        await anyio.to_thread.run_sync(receiver.wait_for, 1, 10.0)
        tg.cancel_scope.cancel()
    assert orjson.loads(receiver.received[0].body)["type"] == "badge.awarded"
