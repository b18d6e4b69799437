"""the log indexed by player on PostgreSQL, in place of player_events

Revision ID: b7e2d94c1f36
Revises: a4f3c2e1d0b8
Create Date: 2026-12-01 13:00:00.000000
"""

from __future__ import annotations

from alembic import op

revision = "b7e2d94c1f36"
down_revision = "a4f3c2e1d0b8"
branch_labels = None
depends_on = None

_BY_PLAYER = "ix_events_tenant_id_player_id_position"


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        return  # SQLite keeps player_events
    # Built over the whole log in this transaction: appends wait until it is done.
    op.create_index(_BY_PLAYER, "events", ["tenant_id", "player_id", "position"])
    op.execute("TRUNCATE player_events")
    # How far player_events covered the log (store/sql/repositories.PLAYER_INDEX).
    op.execute("DELETE FROM cursors WHERE name = 'player-index'")


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        return
    # player_events is empty and its cursor gone: the indexer fills it again from the start.
    op.drop_index(_BY_PLAYER, table_name="events")
