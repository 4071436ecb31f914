"""deployments.one_off: a copy pushed by hand to a destination the certificate does not list.

`apply` leaves such copies alone (it deletes only copies of listed destinations it no longer
wants); retiring the certificate, or removing it from the config, still deletes them.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("deployments") as batch:
        batch.add_column(sa.Column("one_off", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("deployments") as batch:
        batch.drop_column("one_off")
