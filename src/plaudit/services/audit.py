"""The admin audit log: who changed what, when, and the resource before and after.

Each entry is written in the transaction of the change, so there is no change without its
entry. The actor is the caller the API authenticated (set once per request by the scope
check; worker threads inherit it), ``cli`` for the command line, ``system`` otherwise.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from plaudit.domain.pagination import Page, decode_position, page_of
from plaudit.store.ports import AuditQuery, AuditRow, Database, UnitOfWork

_ACTOR: ContextVar[str] = ContextVar("plaudit_actor", default="system")


def set_actor(actor: str) -> None:
    """The caller of this request (or task); changes it for what runs from here on."""
    _ACTOR.set(actor)


@contextmanager
def acting_as(actor: str) -> Iterator[None]:
    token = _ACTOR.set(actor)
    try:
        yield
    finally:
        _ACTOR.reset(token)


def record(
    uow: UnitOfWork,
    tenant_id: str,
    action: str,
    resource: tuple[str, str],
    at: datetime,
    before: Mapping[str, Any] | None = None,
    after: Mapping[str, Any] | None = None,
) -> None:
    """Append an entry for ``action`` on ``resource`` (type, id), in ``uow``'s transaction."""
    kind, ident = resource
    uow.audit.add(tenant_id, AuditRow(at, _ACTOR.get(), action, kind, ident, before, after))


@dataclass(frozen=True, slots=True)
class AuditFilter:
    resource_type: str | None = None
    resource_id: str | None = None
    actor: str | None = None
    action: str | None = None
    since: datetime | None = None
    until: datetime | None = None


class AuditService:
    def __init__(self, db: Database) -> None:
        self.db = db

    def page(
        self, tenant_id: str, where: AuditFilter, cursor: str | None, limit: int
    ) -> Page[tuple[int, AuditRow]]:
        """Newest first."""
        query = AuditQuery(**asdict(where), before_id=decode_position(cursor), limit=limit + 1)
        with self.db.read() as uow:
            rows = uow.audit.query(tenant_id, query)
        return page_of(rows, limit, lambda r: r[0])

    def export(
        self, tenant_id: str, where: AuditFilter, batch: int = 1000
    ) -> Iterator[tuple[int, AuditRow]]:
        """Every matching entry, newest first, read a batch at a time."""
        before = 0
        while True:
            query = AuditQuery(**asdict(where), before_id=before, limit=batch)
            with self.db.read() as uow:
                rows = uow.audit.query(tenant_id, query)
            yield from rows
            if len(rows) < batch:
                return
            before = rows[-1][0]
