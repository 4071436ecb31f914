"""Initial schema: what certsync created with create_all before it had migrations.

Constraints are unnamed, as create_all made them: each backend names them (PostgreSQL
`certificates_name_version_key`, ...; SQLite leaves them unnamed).

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# sync.store.UTCDateTime: timestamptz on PostgreSQL, text on SQLite (the decorator adds the zone).
UTC = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "settings",
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("value", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_table(
        "authorities",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(63), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("parent_id", sa.Integer(), nullable=True),
        sa.Column("subject", sa.String(1024), nullable=False),
        sa.Column("key_type", sa.String(16), nullable=False),
        sa.Column("serial", sa.String(64), nullable=False),
        sa.Column("not_before", UTC, nullable=False),
        sa.Column("not_after", UTC, nullable=False),
        sa.Column("cert_der", sa.LargeBinary(), nullable=False),
        sa.Column("key_enc", sa.LargeBinary(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("crl_number", sa.Integer(), nullable=False),
        sa.Column("crl_der", sa.LargeBinary(), nullable=True),
        sa.ForeignKeyConstraint(["parent_id"], ["authorities.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name", "generation"),
    )
    op.create_index(op.f("ix_authorities_name"), "authorities", ["name"])
    op.create_table(
        "certificates",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(63), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("profile", sa.String(63), nullable=False),
        sa.Column("authority_id", sa.Integer(), nullable=False),
        sa.Column("serial", sa.String(64), nullable=False),
        sa.Column("common_name", sa.String(255), nullable=True),
        sa.Column("sans", sa.JSON(), nullable=False),
        sa.Column("key_type", sa.String(16), nullable=False),
        sa.Column("not_before", UTC, nullable=False),
        sa.Column("not_after", UTC, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("cert_der", sa.LargeBinary(), nullable=False),
        sa.Column("key_enc", sa.LargeBinary(), nullable=True),
        sa.Column("source", sa.String(8), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("revoked_at", UTC, nullable=True),
        sa.Column("revocation_reason", sa.String(32), nullable=True),
        sa.ForeignKeyConstraint(["authority_id"], ["authorities.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name", "version"),
        sa.UniqueConstraint("serial"),
    )
    op.create_index(op.f("ix_certificates_name"), "certificates", ["name"])
    op.create_table(
        "deployments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("cert_name", sa.String(63), nullable=False),
        sa.Column("destination", sa.String(63), nullable=False),
        sa.Column("remote_name", sa.String(512), nullable=False),
        sa.Column("certificate_id", sa.Integer(), nullable=True),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("remote_version", sa.String(128), nullable=True),
        sa.Column("pushed_at", UTC, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.ForeignKeyConstraint(["certificate_id"], ["certificates.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("destination", "remote_name"),
    )
    op.create_index(op.f("ix_deployments_cert_name"), "deployments", ["cert_name"])
    op.create_table(
        "locks",
        sa.Column("name", sa.String(63), nullable=False),
        sa.Column("owner", sa.String(255), nullable=False),
        sa.Column("expires_at", UTC, nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )


def downgrade() -> None:
    op.drop_table("locks")
    op.drop_index(op.f("ix_deployments_cert_name"), table_name="deployments")
    op.drop_table("deployments")
    op.drop_index(op.f("ix_certificates_name"), table_name="certificates")
    op.drop_table("certificates")
    op.drop_index(op.f("ix_authorities_name"), table_name="authorities")
    op.drop_table("authorities")
    op.drop_table("settings")
