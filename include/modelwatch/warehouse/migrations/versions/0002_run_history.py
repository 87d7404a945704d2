"""monitoring_runs.history: which earlier intervals a run's history-dependent results used.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("monitoring_runs", sa.Column("history", sa.Text(), nullable=True))


def downgrade() -> None:
    # A plain DROP COLUMN: a batch rebuild of the table would break the views that read it on SQLite.
    op.drop_column("monitoring_runs", "history")
