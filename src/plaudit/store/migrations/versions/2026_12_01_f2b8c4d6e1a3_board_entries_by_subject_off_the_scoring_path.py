"""board entries by subject off the scoring path (PostgreSQL)

Revision ID: f2b8c4d6e1a3
Revises: e5d1a7c3b920
Create Date: 2026-12-01 23:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "f2b8c4d6e1a3"
down_revision = "e5d1a7c3b920"
branch_labels = None
depends_on = None

_OLD = "ix_board_entries_tenant_id_board_id_window_subject"
_NEW = "ix_board_entries_by_subject"
_COLUMNS = ["tenant_id", "board_id", "window", "subject"]


def upgrade() -> None:
    op.add_column(
        "board_entries",
        sa.Column("by_subject", sa.Boolean(), nullable=False, server_default=sa.text("true")),
    )
    # An entry its subject's events lead to: an event's, for the event's own player. The
    # others (adjustments, groups' entries) stay indexed by subject. Over the whole table,
    # in this transaction: scoring waits until it is done.
    op.execute(
        "UPDATE board_entries SET by_subject = false WHERE EXISTS (SELECT 1 FROM events "
        "WHERE events.tenant_id = board_entries.tenant_id AND events.id = board_entries.ref "
        "AND events.player_id = board_entries.subject)"
    )
    if op.get_bind().dialect.name == "sqlite":
        return  # keeps its whole index (store/sql/tables.py), and the flags for later
    op.drop_index(_OLD, table_name="board_entries")
    op.create_index(
        _NEW, "board_entries", _COLUMNS, unique=False, postgresql_where=sa.text("by_subject")
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        op.drop_index(_NEW, table_name="board_entries")
        op.create_index(_OLD, "board_entries", _COLUMNS, unique=False)
    op.drop_column("board_entries", "by_subject")
