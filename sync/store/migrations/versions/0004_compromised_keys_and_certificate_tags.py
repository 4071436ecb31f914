"""compromised_keys: public keys revoked for keyCompromise, refused by every later issuance;
authorities.cert_tag and certificates.cert_tag: the certificates' integrity tags (HMAC under a key
derived from the master key). A migration has no master key, so the columns start empty: the next
run holding the key (`certsync init`, which this upgrade needs, or the first use of a row) tags
each row after checking it against its sealed key and its issuer's signature.

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
    for table in ("authorities", "certificates"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("cert_tag", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    for table in ("certificates", "authorities"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("cert_tag")
    op.drop_table("compromised_keys")
