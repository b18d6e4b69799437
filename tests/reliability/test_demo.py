"""The demo command against a real server: the newcomer's first minute."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest

from tests.support.server import PlauditServer, create_admin_key, run_plaudit


@pytest.mark.slow
def test_the_demo_streams_events_that_score(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with PlauditServer(data) as server:
        server.start()
        output = run_plaudit(
            data, "demo", "--url", server.url, "--count", "300", "--rate", "2000", "--seed", "3"
        )
        assert "Sent 300 events" in output
        assert "0 rejected" in output
        key = json.loads(
            run_plaudit(data, "keys", "create", "--name", "t", "--scope", "read", "--json")
        )["key"]
        headers = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=server.url, headers=headers, timeout=10) as client:
            for _ in range(50):  # the scoring worker follows the log within a second or so
                players = client.get("/v1/players", params={"limit": 100}).json()["items"]
                standings = [
                    client.get(f"/v1/players/{p['id']}").json()["standing"] for p in players
                ]
                if any(s["balances"] for s in standings):
                    break
                time.sleep(0.2)
            assert any(s["balances"].get("xp", 0) > 0 for s in standings)
            assert any(s["badges"] for s in standings)
            sources = {s["source"] for s in client.get("/v1/sources").json()}
            assert {"lms", "crm", "hris"} <= sources


@pytest.mark.slow
def test_the_demo_server_delivers_signed_webhooks_to_its_own_inbox(tmp_path: Path) -> None:
    data = tmp_path / "data"
    key = create_admin_key(data)
    with PlauditServer(data, "--demo", "--demo-rate", "50") as server:
        server.start()
        assert "webhooks signed and delivered to" in server.output()
        headers = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=server.url, headers=headers, timeout=10) as client:
            deadline = time.monotonic() + 30
            inbox: list[dict[str, object]] = []
            while not inbox and time.monotonic() < deadline:
                time.sleep(0.5)
                inbox = client.get("/demo/webhook-inbox").json()
            assert inbox, "no webhook reached the demo inbox in 30 s"
            assert all(m["signature_verified"] for m in inbox)
            assert {m["type"] for m in inbox} <= {"badge.awarded", "level.reached"}
