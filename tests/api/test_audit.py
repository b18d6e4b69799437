"""The admin audit log: every admin change with who, when, before and after; append-only;
queryable and exportable; never a secret in it."""

from __future__ import annotations

import contextvars
import csv
import io
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DatabaseError

from plaudit.bootstrap import Container
from plaudit.domain.auth import ROLES, Role
from plaudit.services.audit import acting_as
from tests.api.conftest import ClientFactory
from tests.api.test_rulesets_and_scoring import _publish
from tests.conftest import new_key
from tests.support.events import event

pytestmark = pytest.mark.anyio


async def entries(client: httpx.AsyncClient, **params: Any) -> list[dict[str, Any]]:
    found = await client.get("/v1/audit", params={"limit": 1000, **params})
    assert found.status_code == 200, found.text
    items: list[dict[str, Any]] = found.json()["items"]
    return items


async def test_every_admin_change_is_recorded_with_who_when_before_and_after(
    container: Container, client_for: ClientFactory
) -> None:
    key = new_key(container, *ROLES[Role.OWNER])
    client = client_for(key)
    me = "api_key:" + (await client.get("/v1/keys")).json()[-1]["id"]
    ruleset_id = await _publish(client)
    await client.put(f"/v1/rulesets/{ruleset_id}/draft", json={"source": "currencies: [xp]\n"})
    await client.post("/v1/badges", json={"id": "mentor", "name": "Mentor"})
    await client.patch("/v1/badges/mentor", json={"name": "Great mentor"})
    await client.post("/v1/events", json=[event("1"), event("2")])
    container.scoring.score_pending()
    award = await client.post(
        "/v1/badges/mentor/awards", json={"player": "lms:alice", "reason": "coached"}
    )
    await client.post(f"/v1/awards/{award.json()['id']}/revoke", json={"reason": "twice"})
    await client.post(
        "/v1/players/lms:alice/adjustments", json={"currency": "xp", "amount": 5, "reason": "x"}
    )
    made = await client.post("/v1/keys", json={"name": "lms", "roles": ["ingest"]})
    await client.delete(f"/v1/keys/{made.json()['id']}")
    hook = await client.post("/v1/webhooks", json={"url": "https://example.com/h"})
    await client.patch(f"/v1/webhooks/{hook.json()['id']}", json={"enabled": False})
    await client.post(f"/v1/webhooks/{hook.json()['id']}/secrets/rotate", json={})
    await client.delete(f"/v1/webhooks/{hook.json()['id']}")
    events = (await client.get("/v1/events")).json()["items"]
    await client.post(f"/v1/events/{events[0]['event_id']}/retract", json={"reason": "test"})

    log = await entries(client, actor=me)
    assert [e["action"] for e in reversed(log)] == [
        "ruleset.create",
        "ruleset.publish",
        "ruleset.draft",
        "badge.create",
        "badge.update",
        "award.create",
        "award.revoke",
        "ledger.adjust",
        "key.create",
        "key.revoke",
        "webhook.create",
        "webhook.update",
        "webhook.rotate_secret",
        "webhook.delete",
        "event.retract",
    ]
    assert {e["actor"] for e in log} == {me}
    update = next(e for e in log if e["action"] == "badge.update")
    assert (update["before"]["name"], update["after"]["name"]) == ("Mentor", "Great mentor")
    paused = next(e for e in log if e["action"] == "webhook.update")
    assert (paused["before"]["enabled"], paused["after"]["enabled"]) == (True, False)
    publish = next(e for e in log if e["action"] == "ruleset.publish")
    assert publish["before"] is None
    assert publish["after"]["live"] == f"{ruleset_id}@1"

    # Never a secret: not the key's, not the webhook's, old or new.
    everything = (await client.get("/v1/audit/export")).content
    for secret in (key, made.json()["key"], hook.json()["secret"]):
        assert secret.encode() not in everything
    assert b"whsec_" not in everything
    assert b"plk_" not in everything


async def test_a_refused_change_leaves_no_entry_and_the_cli_is_named(
    client: httpx.AsyncClient, container: Container
) -> None:
    await client.post("/v1/badges", json={"id": "mentor", "name": "Mentor"})
    again = await client.post("/v1/badges", json={"id": "mentor", "name": "Mentor"})
    assert again.status_code == 409
    assert [e["action"] for e in await entries(client, resource_type="badge")] == ["badge.create"]
    # Outside any request (a fresh context: in-process requests share the test's task).
    contextvars.Context().run(
        container.tenancy.create_key, container.default_tenant, "from code", ROLES[Role.VIEWER]
    )
    assert (await entries(client, action="key.create"))[0]["actor"] == "system"
    with acting_as("cli"):
        container.tenancy.create_key(container.default_tenant, "cli", ROLES[Role.VIEWER])
    assert (await entries(client, action="key.create"))[0]["actor"] == "cli"


async def test_the_log_filters_pages_and_exports_as_ndjson_and_csv(
    client: httpx.AsyncClient,
) -> None:
    for n in range(5):
        await client.post("/v1/badges", json={"id": f"b{n}", "name": f"B{n}"})
    await client.delete("/v1/badges/b0")
    first = (await client.get("/v1/audit", params={"limit": 2})).json()
    second = (
        await client.get("/v1/audit", params={"limit": 2, "cursor": first["next_cursor"]})
    ).json()
    assert [e["id"] for e in first["items"]] > [e["id"] for e in second["items"]]
    only = await entries(client, resource_type="badge", resource_id="b0")
    assert [e["action"] for e in only] == ["badge.delete", "badge.create"]

    ndjson = await client.get("/v1/audit/export", params={"action": "badge.create"})
    assert ndjson.headers["content-type"].startswith("application/x-ndjson")
    lines = [orjson.loads(line) for line in ndjson.content.splitlines()]
    assert [e["resource_id"] for e in lines] == ["b4", "b3", "b2", "b1", "b0"]
    exported = await client.get(
        "/v1/audit/export", params={"format": "csv", "resource_type": "badge"}
    )
    assert exported.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert len(rows) == 6
    assert orjson.loads(rows[0]["before"])["name"] == "B0"
    bad = await client.get("/v1/audit/export", params={"format": "xml"})
    assert bad.status_code == 422


async def test_the_log_is_append_only_in_the_database_itself(
    client: httpx.AsyncClient, container: Container
) -> None:
    await client.post("/v1/badges", json={"id": "mentor", "name": "Mentor"})
    for statement in ("UPDATE audit_log SET actor = 'someone else'", "DELETE FROM audit_log"):
        with pytest.raises(DatabaseError, match="append-only"), container.db.write() as uow:
            uow.conn.execute(text(statement))
    assert len(await entries(client, resource_type="badge")) == 1
