"""ledger by player off the scoring path (PostgreSQL)

Revision ID: e5d1a7c3b920
Revises: c3a8e5f0b214
Create Date: 2026-12-01 22:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "e5d1a7c3b920"
down_revision = "c3a8e5f0b214"
branch_labels = None
depends_on = None

_BY_PLAYER = "ix_ledger_tenant_id_player_id_id"
_WITHOUT_EVENT = "ix_ledger_without_event"


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        return  # done by 5e1c0a7d2b94
    op.drop_index(_BY_PLAYER, table_name="ledger")
    # Built over the whole ledger in this transaction (it holds the few entries without an
    # event): scoring waits until it is done.
    op.create_index(
        _WITHOUT_EVENT,
        "ledger",
        ["tenant_id", "player_id", "id"],
        unique=False,
        postgresql_where=sa.text("event_id IS NULL"),
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        return
    op.drop_index(_WITHOUT_EVENT, table_name="ledger")
    op.create_index(_BY_PLAYER, "ledger", ["tenant_id", "player_id", "id"], unique=False)
