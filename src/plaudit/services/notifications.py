"""What a player's live stream tells: badges earned or revoked and levels reached, from the
outbox (so a reconnecting client resumes where it left off), and rank changes, live."""

from __future__ import annotations

from plaudit.services.outbox import PLAYER_TYPES
from plaudit.store.ports import Database, StoredMessage


class NotificationService:
    def __init__(self, db: Database) -> None:
        self.db = db

    def since(self, tenant_id: str, player_id: str, after: int, limit: int) -> list[StoredMessage]:
        """The player's messages after position ``after``, oldest first."""
        with self.db.read() as uow:
            return uow.outbox.for_player(tenant_id, player_id, PLAYER_TYPES, after, limit)

    def last(self) -> int:
        """The position a new stream starts after (it tells what happens from now on)."""
        with self.db.read() as uow:
            return uow.outbox.last_seq()
