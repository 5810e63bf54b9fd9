"""Vectors live in immutable segment files recorded here; deletions are tombstones.

Replaces the single ``vectors.faiss`` file, which every write rewrote whole. An index that already
has chunks is marked ``vectors_rebuild``: its next writer writes segments from the vectors stored
in SQLite (nothing is re-embedded), and until then readers search those vectors in memory.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "segments",
        sa.Column("name", sa.String(), primary_key=True),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("min_id", sa.Integer(), nullable=False),
        sa.Column("max_id", sa.Integer(), nullable=False),
    )
    op.create_table("tombstones", sa.Column("chunk_id", sa.Integer(), primary_key=True, autoincrement=False))
    op.execute(
        "CREATE TRIGGER chunks_tombstone AFTER DELETE ON chunks BEGIN "
        "INSERT OR IGNORE INTO tombstones(chunk_id) VALUES (old.id); END"
    )
    op.execute(
        "INSERT INTO settings(key, value) SELECT 'vectors_rebuild', '1' WHERE EXISTS (SELECT 1 FROM chunks)"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS chunks_tombstone")
    op.drop_table("tombstones")
    op.drop_table("segments")
    op.execute("DELETE FROM settings WHERE key = 'vectors_rebuild'")
