"""compromised_keys: public keys revoked for keyCompromise, refused by every later issuance.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""
import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "compromised_keys",
        sa.Column("spki_sha256", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("compromised_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("cert_name", sa.String(length=63), nullable=False),
        sa.Column("serial", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("spki_sha256"),
    )


def downgrade() -> None:
    op.drop_table("compromised_keys")
