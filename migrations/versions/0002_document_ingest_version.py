"""Record which version of the ingest pipeline wrote each document.

Documents that existed before this column are marked version 1, so the next indexing run
processes them again with the current pipeline (reusing every vector whose text is unchanged).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


# Plain ALTER TABLE, not Alembic's batch mode: batch mode copies and drops the table, and dropping
# `documents` with foreign keys on would cascade-delete every chunk.


def upgrade() -> None:
    op.add_column("documents", sa.Column("ingest_version", sa.Integer(), nullable=False, server_default="1"))


def downgrade() -> None:
    op.drop_column("documents", "ingest_version")
