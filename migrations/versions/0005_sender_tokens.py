"""sender_tokens: credentials of machine clients that send slides by STOW-RS

A STOW-RS sender authenticates with a token that speaks for one sender (a caller rule's AE
title); only the token's sha256 is kept. The table starts empty; every existing row of every
other table is kept.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "sender_tokens",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sender", sa.String(length=16), nullable=False),
        sa.Column("token_sha256", sa.String(length=64), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("note", sa.String(length=256), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=128), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_by", sa.String(length=128), nullable=True),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_used_from", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sender_tokens")),
        sa.UniqueConstraint("token_sha256", name=op.f("uq_sender_tokens_token_sha256")),
    )
    with op.batch_alter_table("sender_tokens", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sender_tokens_sender"), ["sender"])


def downgrade() -> None:
    with op.batch_alter_table("sender_tokens", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sender_tokens_sender"))
    op.drop_table("sender_tokens")
