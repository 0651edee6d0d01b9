"""instances.intake and instances.sender: by which path, and from whom, an instance came

Every intake path (C-STORE, STOW-RS, pull, watched folder, `unitumour process`) now ends in
one receive function, which records the path and the sender on the instance row as well as
in its audit row. Existing rows are kept: those that came over an association get
'c-store' and the association's calling AE title; the others (admitted by `unitumour
process` or recovered at start-up, which the old rows cannot tell apart) stay NULL.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("instances", schema=None) as batch_op:
        batch_op.add_column(sa.Column("intake", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("sender", sa.String(length=128), nullable=True))
    op.execute(
        "UPDATE instances SET intake = 'c-store', sender = ("
        "SELECT associations.calling_ae FROM associations "
        "WHERE associations.id = instances.association_id) "
        "WHERE association_id IS NOT NULL"
    )


def downgrade() -> None:
    with op.batch_alter_table("instances", schema=None) as batch_op:
        batch_op.drop_column("sender")
        batch_op.drop_column("intake")
