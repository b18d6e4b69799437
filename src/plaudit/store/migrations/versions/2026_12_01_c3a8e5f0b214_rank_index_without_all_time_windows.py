"""the boards' rank index without all-time windows

Revision ID: c3a8e5f0b214
Revises: b7e2d94c1f36
Create Date: 2026-12-01 14:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "c3a8e5f0b214"
down_revision = "b7e2d94c1f36"
branch_labels = None
depends_on = None

_RANKED = "ix_board_scores_ranked"
_COLUMNS: list[str | sa.TextClause] = [
    "tenant_id",
    "board_id",
    "window",
    sa.text("units DESC"),
    "reached_us",
    "subject",
    "entries",
]
# An all-time window never closes: its standings are never read from SQL in rank order.
_RANKED_WINDOWS = sa.text("\"window\" <> 'all'")


def upgrade() -> None:
    op.drop_index(_RANKED, table_name="board_scores")
    op.create_index(
        _RANKED,
        "board_scores",
        _COLUMNS,
        postgresql_where=_RANKED_WINDOWS,
        sqlite_where=_RANKED_WINDOWS,
    )


def downgrade() -> None:
    op.drop_index(_RANKED, table_name="board_scores")
    op.create_index(_RANKED, "board_scores", _COLUMNS)
