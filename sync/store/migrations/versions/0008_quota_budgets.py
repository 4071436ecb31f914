"""quota_budgets: each quota domain's token bucket, shared by runners on one store (issue 14).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "quota_budgets",
        sa.Column("key", sa.String(255), primary_key=True),
        sa.Column("empty_at", sa.Float(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("quota_budgets")
