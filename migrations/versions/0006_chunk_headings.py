"""Record each chunk's heading path.

Chunks now know the headings above them (``Configuration › Logging › Rotation``), shown with
search results. Existing chunks get an empty path; version 3 of the ingest pipeline
(``semsearch.ingest.INGEST_VERSION``) processes their documents again on the next ``index``,
embedding again only the chunks whose text to embed changed (those under a heading).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("chunks", sa.Column("heading", sa.Text(), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("chunks") as batch:
        batch.drop_column("heading")
