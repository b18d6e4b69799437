"""tenant foreign keys off the tables written with every event (PostgreSQL)

Revision ID: a4f3c2e1d0b8
Revises: 5e1c0a7d2b94
Create Date: 2026-12-01 10:30:00.000000
"""

from __future__ import annotations

from alembic import op

revision = "a4f3c2e1d0b8"
down_revision = "5e1c0a7d2b94"
branch_labels = None
depends_on = None

# Written with every event or effect; see tables.tenant_checked_on_sqlite.
_TABLES = (
    "events",
    "ledger",
    "player_states",
    "badge_awards",
    "level_ups",
    "issuance_log",
    "rule_errors",
    "outbox",
    "activity_days",
    "held_events",
)


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        return  # SQLite keeps them
    for table in _TABLES:
        op.drop_constraint(f"fk_{table}_tenant_id_tenants", table, type_="foreignkey")


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        return
    for table in _TABLES:
        op.create_foreign_key(
            f"fk_{table}_tenant_id_tenants", table, "tenants", ["tenant_id"], ["id"]
        )
