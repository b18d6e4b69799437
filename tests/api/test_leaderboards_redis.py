"""Leaderboard reads through the API with the Redis projection: the hot routes answer with
the asyncio client on the event loop, and agree with the synchronous path."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import redis

from plaudit.bootstrap import Container
from plaudit.domain.events import IncomingEvent
from plaudit.leaderboards.redis import RedisProjection
from plaudit.settings import LeaderboardSettings, Settings
from tests.support.redis_keys import REDIS_URL, delete_prefix, unique_prefix

pytestmark = [pytest.mark.anyio, pytest.mark.redis]

RULES = """
currencies: [xp]
rules:
  - {id: task, on: task.done, award: {xp: "event.properties.points"}}
leaderboards:
  - {id: xp, name: XP, metric: {currency: xp}}
  - {id: teams, name: Teams, metric: {currency: xp}, group_by: team}
"""


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        redis_url=REDIS_URL,
        leaderboards=LeaderboardSettings(redis_prefix=unique_prefix()),
        _env_file=None,
    )


@pytest.fixture
async def league(container: Container, settings: Settings) -> AsyncIterator[Container]:
    assert isinstance(container.leaderboards.projection, RedisProjection)
    view = container.rulesets.create("default", "p", RULES)
    container.rulesets.publish("default", view.record.id, "test")
    events = [
        IncomingEvent(
            f"k{i}",
            "lms",
            "task.done",
            actor,
            container.clock() - timedelta(hours=i + 1),
            {"points": points},
        )
        for i, (actor, points) in enumerate([("ann", 5), ("bob", 9), ("cy", 7), ("dee", 9)])
    ]
    container.ingest.ingest("default", events)
    while container.scoring.score_pending().events:
        pass
    container.leaderboards.sync()
    yield container
    assert container.redis_async is not None
    await container.redis_async.aclose()
    client = redis.Redis.from_url(REDIS_URL)
    delete_prefix(client, settings.leaderboards.redis_prefix)
    client.close()


async def test_standings_and_around_me_answer_from_redis_on_the_event_loop(
    league: Container, client: httpx.AsyncClient
) -> None:
    service = league.leaderboards
    # Cold caches (the live rules, the opt-outs) need SQL: that request goes to a thread...
    service.forget_live("default")
    assert await service.page_async("default", "xp", None, 0, 10) is None
    assert (await client.get("/v1/leaderboards/xp/standings")).status_code == 200
    # ...and warm, the asynchronous path answers.
    found = await service.page_async("default", "xp", None, 0, 10)
    assert found is not None
    _, entries, total, _ = found
    ids = {
        a: league.players.get("default", f"lms:{a}").player.id for a in ("ann", "bob", "cy", "dee")
    }
    # bob and dee both have 9; dee reached it 4 hours ago, bob 2 hours ago.
    assert [(e.rank, e.subject, e.score) for e in entries] == [
        (1, ids["dee"], 9.0),
        (2, ids["bob"], 9.0),
        (3, ids["cy"], 7.0),
        (4, ids["ann"], 5.0),
    ]
    assert total == 4
    view = service.window("default", "xp", None)
    sync_entries, sync_total, sync_version = service.page("default", view, 0, 10)
    assert (sync_entries, sync_total, sync_version) == (entries, total, found[3])

    response = await client.get("/v1/leaderboards/xp/standings", params={"limit": 2})
    assert response.status_code == 200
    body = response.json()
    assert [i["subject"] for i in body["items"]] == [ids["dee"], ids["bob"]]
    assert body["participants"] == 4
    etag = response.headers["etag"]
    again = await client.get(
        "/v1/leaderboards/xp/standings", params={"limit": 2}, headers={"If-None-Match": etag}
    )
    assert again.status_code == 304

    mine = await client.get(f"/v1/leaderboards/xp/standings/{ids['cy']}", params={"around": 1})
    assert mine.status_code == 200
    assert mine.json()["entry"]["rank"] == 3
    assert [n["rank"] for n in mine.json()["neighbours"]] == [2, 3, 4]
    # An identity reference takes the SQL path, with the same answer.
    by_identity = await client.get("/v1/leaderboards/xp/standings/lms:cy", params={"around": 1})
    assert by_identity.json()["neighbours"] == mine.json()["neighbours"]
    team = await service.around_async("default", "teams", None, "nobody", 1)
    assert team is not None
    assert team[2] == []  # no such group: no standing, and no SQL needed to say so
