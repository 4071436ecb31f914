"""discovered_certificates and discovery_locations: the inventory of `certsync discover`.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

UTC = sa.DateTime(timezone=True)  # sync.store.models.UTCDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "discovered_certificates",
        sa.Column("fingerprint", sa.String(64), primary_key=True),
        sa.Column("subject", sa.String(1024), nullable=False),
        sa.Column("issuer", sa.String(1024), nullable=False),
        sa.Column("serial", sa.String(64), nullable=False),
        sa.Column("sans", sa.JSON(), nullable=False),
        sa.Column("not_before", UTC, nullable=False),
        sa.Column("not_after", UTC, nullable=False),
        sa.Column("key_type", sa.String(32), nullable=False),
        sa.Column("key_size", sa.Integer(), nullable=False),
        sa.Column("signature_algorithm", sa.String(64), nullable=False),
        sa.Column("self_signed", sa.Boolean(), nullable=False),
        sa.Column("is_ca", sa.Boolean(), nullable=False),
        sa.Column("managed", sa.Boolean(), nullable=False),
        sa.Column("first_seen", UTC, nullable=False),
        sa.Column("last_seen", UTC, nullable=False),
    )
    op.create_index("ix_discovered_certificates_not_after", "discovered_certificates", ["not_after"])
    op.create_table(
        "discovery_locations",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("fingerprint", sa.String(64), sa.ForeignKey("discovered_certificates.fingerprint"), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("location", sa.String(1024), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("first_seen", UTC, nullable=False),
        sa.Column("last_seen", UTC, nullable=False),
        sa.Column("gone_since", UTC, nullable=True),
        sa.UniqueConstraint("location", "fingerprint"),
    )
    op.create_index("ix_discovery_locations_fingerprint", "discovery_locations", ["fingerprint"])


def downgrade() -> None:
    op.drop_index("ix_discovery_locations_fingerprint", "discovery_locations")
    op.drop_table("discovery_locations")
    op.drop_index("ix_discovered_certificates_not_after", "discovered_certificates")
    op.drop_table("discovered_certificates")
