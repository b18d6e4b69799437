"""Idempotency-Key (draft-ietf-httpapi-idempotency-key-header): replay, 409, 422."""

from __future__ import annotations

from datetime import timedelta

from plaudit.domain.clock import Clock
from plaudit.errors import IdempotencyKeyInFlight, IdempotencyKeyReused
from plaudit.store.ports import Database, IdempotencyRecord


class IdempotencyService:
    def __init__(
        self, db: Database, clock: Clock, ttl: timedelta, in_flight_timeout: timedelta
    ) -> None:
        self.db = db
        self.clock = clock
        self.ttl = ttl
        self.in_flight_timeout = in_flight_timeout

    def begin(self, tenant_id: str, key: str, fingerprint: str) -> IdempotencyRecord | None:
        """Claim the key (None: go ahead) or return the stored response to replay."""
        now = self.clock()
        expires_at = now + self.ttl
        record = None
        while record is None:
            with self.db.write() as uow:
                repo = uow.idempotency
                if repo.claim(tenant_id, key, fingerprint, now, expires_at) or repo.take_over(
                    tenant_id, key, fingerprint, now, expires_at, now - self.in_flight_timeout
                ):
                    uow.commit()
                    return None
                # The claim failed, so the row existed; on PostgreSQL, whose writers run side
                # by side, its request may have released it since: then claim again.
                record = repo.get(tenant_id, key)
        if record.fingerprint != fingerprint:
            raise IdempotencyKeyReused(
                "this Idempotency-Key was first used with a different request "
                "(method, path or body); use a new key for a new request"
            )
        if record.state != "done":
            raise IdempotencyKeyInFlight(
                "the first request with this Idempotency-Key is still being processed; retry later"
            )
        return record

    def complete(
        self, tenant_id: str, key: str, status_code: int, content_type: str, body: bytes
    ) -> None:
        with self.db.write() as uow:
            uow.idempotency.complete(tenant_id, key, status_code, content_type, body)
            uow.commit()

    def release(self, tenant_id: str, key: str) -> None:
        """Forget an in-flight claim whose request failed, so that a retry runs again."""
        with self.db.write() as uow:
            uow.idempotency.release(tenant_id, key)
            uow.commit()

    def purge_expired(self) -> int:
        with self.db.write() as uow:
            removed = uow.idempotency.purge_expired(self.clock())
            uow.commit()
        return removed
