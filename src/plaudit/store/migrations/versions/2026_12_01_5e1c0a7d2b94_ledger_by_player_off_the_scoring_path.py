"""ledger by player off the scoring path (SQLite)

Revision ID: 5e1c0a7d2b94
Revises: 8d9945bd992d
Create Date: 2026-12-01 04:40:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "5e1c0a7d2b94"
down_revision = "8d9945bd992d"
branch_labels = None
depends_on = None

_BY_PLAYER = "ix_ledger_tenant_id_player_id_id"
_WITHOUT_EVENT = "ix_ledger_without_event"


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return  # PostgreSQL keeps its index of the ledger by player
    op.drop_index(_BY_PLAYER, table_name="ledger")
    op.create_index(
        _WITHOUT_EVENT,
        "ledger",
        ["tenant_id", "player_id", "id"],
        unique=False,
        sqlite_where=sa.text("event_id IS NULL"),
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    op.drop_index(_WITHOUT_EVENT, table_name="ledger")
    op.create_index(_BY_PLAYER, "ledger", ["tenant_id", "player_id", "id"], unique=False)
