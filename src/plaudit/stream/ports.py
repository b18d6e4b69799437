"""What ingestion tells the stream after a commit (no I/O here: services import it)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Appended:
    """Events one commit appended to one partition of one tenant's log."""

    tenant_id: str
    partition: int
    key: str  # the first event's id: the message's dedupe key
    count: int
