"""result_instances.kind and .series_instance_uid: one result, many objects

A result was one SEG series, so every result instance was a SEG level and its series was the
result's. Now a result also holds an SR, bulk annotations and a key image, each in a series
of its own: every result instance says its kind (seg, sr, ann, key_image) and its series.
Every existing row is kept: it is a SEG level, so kind 'seg' and the result's series uid.

Downgrade drops both columns, and with them the rows that are not SEG levels (to 0003 a
result instance is a SEG level; an SR left there would be taken for one).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("result_instances", schema=None) as batch_op:
        batch_op.add_column(sa.Column("kind", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("series_instance_uid", sa.String(length=64), nullable=True))
    op.execute(
        sa.text(
            "UPDATE result_instances SET kind = 'seg', series_instance_uid = "
            "(SELECT results.series_instance_uid FROM results "
            "WHERE results.id = result_instances.result_id)"
        )
    )
    with op.batch_alter_table("result_instances", schema=None) as batch_op:
        batch_op.alter_column("kind", existing_type=sa.String(length=16), nullable=False)
        batch_op.alter_column(
            "series_instance_uid", existing_type=sa.String(length=64), nullable=False
        )


def downgrade() -> None:
    op.execute(sa.text("DELETE FROM result_instances WHERE kind <> 'seg'"))
    with op.batch_alter_table("result_instances", schema=None) as batch_op:
        batch_op.drop_column("series_instance_uid")
        batch_op.drop_column("kind")
