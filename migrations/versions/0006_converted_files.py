"""converted_files: vendor files taken from the watched folder, one row per content digest

The watched folder converts each vendor file (SVS, NDPI, OME-TIFF...) to DICOM once: the row,
keyed by the sha256 of the file's bytes, says whether it is being converted, was converted
(with the series it became) or failed (with the reason). A new table: no existing row of any
other table changes.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "converted_files",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("source_name", sa.String(length=512), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("identity_source", sa.String(length=128), nullable=True),
        sa.Column("study_instance_uid", sa.String(length=64), nullable=True),
        sa.Column("series_instance_uid", sa.String(length=64), nullable=True),
        sa.Column("slide_id", sa.Integer(), nullable=True),
        sa.Column("first_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["slide_id"], ["slides.id"], name=op.f("fk_converted_files_slide_id_slides")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_converted_files")),
        sa.UniqueConstraint("sha256", name=op.f("uq_converted_files_sha256")),
    )
    with op.batch_alter_table("converted_files", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_converted_files_series_instance_uid"), ["series_instance_uid"]
        )
        batch_op.create_index(batch_op.f("ix_converted_files_slide_id"), ["slide_id"])
        batch_op.create_index(batch_op.f("ix_converted_files_state"), ["state"])


def downgrade() -> None:
    with op.batch_alter_table("converted_files", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_converted_files_state"))
        batch_op.drop_index(batch_op.f("ix_converted_files_slide_id"))
        batch_op.drop_index(batch_op.f("ix_converted_files_series_instance_uid"))
    op.drop_table("converted_files")
