"""pull_watermarks: where polling each PACS (pull intake) stands, kept across restarts

One row per configured pull source, made by its first poll: the watermark (start of the last
complete poll), when it last polled and succeeded, the last error, and counters. A new table:
every existing row of every other table is kept.

Revision ID: 0007
Revises: 0003
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "pull_watermarks",
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("watermark", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_poll_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_success_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("series_retrieved", sa.Integer(), nullable=False),
        sa.Column("instances_received", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("source", name=op.f("pk_pull_watermarks")),
    )


def downgrade() -> None:
    op.drop_table("pull_watermarks")
