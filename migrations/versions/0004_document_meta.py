"""Metadata filters by index: one row per document and top-level metadata key.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "document_meta",
        sa.Column(
            "document_id", sa.Integer(), sa.ForeignKey("documents.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("value", sa.LargeBinary(), nullable=True),
        sa.Column("type", sa.String(), nullable=False),
    )
    op.create_index("ix_document_meta_document_id", "document_meta", ["document_id"])
    op.create_index("ix_document_meta_key_value", "document_meta", ["key", "value", "type", "document_id"])
    op.execute(
        "INSERT INTO document_meta(document_id, key, value, type) "
        "SELECT d.id, j.key, j.value, j.type FROM documents d, json_each(d.metadata) j"
    )


def downgrade() -> None:
    op.drop_table("document_meta")
