"""Record the precision of an index's vectors.

An index now says whether its vectors are the model's own (``fp32``) or a quantised copy's
(``int8``), and never mixes the two. Every index from before this revision holds the model's own,
so it is marked ``fp32``. The revision also keeps older semsearch versions, which know nothing of
int8, from writing fp32 vectors into an int8 index: they refuse a schema they do not know.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "INSERT INTO settings(key, value) SELECT 'precision', 'fp32' "
        "WHERE EXISTS (SELECT 1 FROM settings WHERE key = 'model') "
        "AND NOT EXISTS (SELECT 1 FROM settings WHERE key = 'precision')"
    )


def downgrade() -> None:
    op.execute("DELETE FROM settings WHERE key = 'precision'")
