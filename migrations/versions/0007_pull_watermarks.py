"""pull_watermarks and pull_series: where polling each PACS (pull intake) stands

pull_watermarks: one row per configured pull source, made by its first poll: the watermark
(start of the last complete poll), when it last polled and succeeded, the last error, and
counters. pull_series: each series a source offered that a poll set out to retrieve, its
state (retrieved, retrying, failed), attempts and last error. New tables: every existing
row of every other table is kept.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
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
    op.create_table(
        "pull_series",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("study_instance_uid", sa.String(length=64), nullable=False),
        sa.Column("series_instance_uid", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("instances", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("first_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("retrieved_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pull_series")),
        sa.UniqueConstraint("source", "series_instance_uid", name=op.f("uq_pull_series_source")),
    )
    with op.batch_alter_table("pull_series", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_pull_series_series_instance_uid"), ["series_instance_uid"]
        )
        batch_op.create_index(batch_op.f("ix_pull_series_state"), ["state"])


def downgrade() -> None:
    with op.batch_alter_table("pull_series", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_pull_series_state"))
        batch_op.drop_index(batch_op.f("ix_pull_series_series_instance_uid"))
    op.drop_table("pull_series")
    op.drop_table("pull_watermarks")
