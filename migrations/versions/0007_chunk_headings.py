"""Record each chunk's heading path.

Chunks now know the headings above them (``Configuration › Logging › Rotation``), shown with
search results. Existing chunks get an empty path; version 3 of the ingest pipeline
(``semsearch.ingest.INGEST_VERSION``) processes their documents again on the next ``index``,
embedding again only the chunks whose text to embed changed (those under a heading).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("chunks", sa.Column("heading", sa.Text(), nullable=False, server_default=""))


def downgrade() -> None:
    # SQLite's own DROP COLUMN (3.35+), not a batch-mode rebuild of the table: renaming a rebuilt
    # chunks table into place fails while 0006's view of the keyword text refers to it.
    op.execute("ALTER TABLE chunks DROP COLUMN heading")
