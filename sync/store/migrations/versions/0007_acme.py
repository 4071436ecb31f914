"""ACME: accounts, orders, authorizations, challenges, nonces and EAB keys, shared by server replicas.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

UTC = sa.DateTime(timezone=True)  # sync.store.models.UTCDateTime


revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "acme_accounts",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("profile", sa.String(63), nullable=False),
        sa.Column("thumbprint", sa.String(64), nullable=False, unique=True),
        sa.Column("jwk", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("contact", sa.JSON(), nullable=False),
        sa.Column("eab_kid", sa.String(63), nullable=True),
        sa.Column("created_at", UTC, nullable=False),
    )
    op.create_table(
        "acme_orders",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("account_id", sa.String(32), sa.ForeignKey("acme_accounts.id"), nullable=False),
        sa.Column("profile", sa.String(63), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("identifiers", sa.JSON(), nullable=False),
        sa.Column("expires_at", UTC, nullable=False),
        sa.Column("error", sa.JSON(), nullable=True),
        sa.Column("certificate_serial", sa.String(64), nullable=True),
        sa.Column("created_at", UTC, nullable=False),
    )
    op.create_index("ix_acme_orders_account_id", "acme_orders", ["account_id"])
    op.create_table(
        "acme_authorizations",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("order_id", sa.String(32), sa.ForeignKey("acme_orders.id"), nullable=False),
        sa.Column("identifier", sa.String(255), nullable=False),
        sa.Column("wildcard", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("expires_at", UTC, nullable=False),
    )
    op.create_index("ix_acme_authorizations_order_id", "acme_authorizations", ["order_id"])
    op.create_table(
        "acme_challenges",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("authz_id", sa.String(32), sa.ForeignKey("acme_authorizations.id"), nullable=False),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("token", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("validated_at", UTC, nullable=True),
        sa.Column("error", sa.JSON(), nullable=True),
    )
    op.create_index("ix_acme_challenges_authz_id", "acme_challenges", ["authz_id"])
    op.create_table(
        "acme_nonces",
        sa.Column("value", sa.String(64), primary_key=True),
        sa.Column("expires_at", UTC, nullable=False),
    )
    op.create_index("ix_acme_nonces_expires_at", "acme_nonces", ["expires_at"])
    op.create_table(
        "acme_eab_keys",
        sa.Column("kid", sa.String(63), primary_key=True),
        sa.Column("profile", sa.String(63), nullable=False),
        sa.Column("key_enc", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("account_id", sa.String(32), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("acme_eab_keys")
    op.drop_index("ix_acme_nonces_expires_at", "acme_nonces")
    op.drop_table("acme_nonces")
    op.drop_index("ix_acme_challenges_authz_id", "acme_challenges")
    op.drop_table("acme_challenges")
    op.drop_index("ix_acme_authorizations_order_id", "acme_authorizations")
    op.drop_table("acme_authorizations")
    op.drop_index("ix_acme_orders_account_id", "acme_orders")
    op.drop_table("acme_orders")
    op.drop_table("acme_accounts")
