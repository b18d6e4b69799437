"""Scale-out: each event records its partition (the unit of parallel scoring), and each
player state a token of its last write (how a worker knows its cached copy is current).

On PostgreSQL the audit log becomes append-only in the database, as on SQLite: a trigger
refuses UPDATE and DELETE.

Events logged before this revision keep partition 0: only the scale-out mode reads it,
and no scale-out deployment predates it.

Revision ID: 8d9945bd992d
Revises: 3af809f610c2
Create Date: 2026-11-30 10:37:45.681507
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "8d9945bd992d"
down_revision = "3af809f610c2"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("partition", sa.SmallInteger(), server_default="0", nullable=False)
        )
        batch_op.create_index(
            batch_op.f("ix_events_partition_position"), ["partition", "position"], unique=False
        )

    with op.batch_alter_table("player_states", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("version", sa.BigInteger(), server_default="0", nullable=False)
        )

    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'the audit log is append-only'; END $$"
        )
        op.execute(
            "CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log "
            "FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_log_append_only ON audit_log")
        op.execute("DROP FUNCTION IF EXISTS audit_log_append_only()")
    with op.batch_alter_table("player_states", schema=None) as batch_op:
        batch_op.drop_column("version")

    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_events_partition_position"))
        batch_op.drop_column("partition")
