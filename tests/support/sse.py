"""Reading Server-Sent Events from a streamed httpx response, for tests against a real server."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass
class Sse:
    event: str
    id: str
    data: Any


class EventReader:
    """Server-sent events from a streamed response, one at a time; comments are skipped."""

    def __init__(self, response: httpx.Response) -> None:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        self._lines = response.iter_lines()

    def next(self) -> Sse:
        fields: dict[str, str] = {}
        for line in self._lines:  # each read waits at most READ_TIMEOUT
            if line.startswith(":"):
                continue
            if line:
                name, _, value = line.partition(":")
                fields[name] = value.removeprefix(" ")
                continue
            if "event" in fields:
                return Sse(fields["event"], fields.get("id", ""), json.loads(fields["data"]))
            fields = {}
        raise AssertionError("the stream ended")

    def until(self, wanted: str, deadline: float) -> Sse:
        """The next event of the kind ``wanted``, skipping others, before the deadline."""
        while time.monotonic() < deadline:
            got = self.next()
            if got.event == wanted:
                return got
        raise AssertionError(f"no {wanted!r} event in time")
