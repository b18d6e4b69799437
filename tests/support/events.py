"""Event bodies for tests."""

from __future__ import annotations

from typing import Any


def event(
    key: str,
    *,
    source: str = "lms",
    actor: str = "alice",
    type: str = "lesson.completed",
    occurred_at: str = "2026-05-01T10:00:00Z",
    **extra: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": key,
        "source": source,
        "type": type,
        "actor": actor,
        "occurred_at": occurred_at,
        "properties": {"course": "gdpr"},
    }
    body.update(extra)
    return body
