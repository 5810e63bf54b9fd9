"""Initial schema: settings, documents, chunks with vectors, and the FTS5 index over chunk text.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "settings",
        sa.Column("key", sa.String(), primary_key=True),
        sa.Column("value", sa.Text(), nullable=False),
    )
    op.create_table(
        "documents",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("path", sa.Text(), nullable=False, unique=True),
        sa.Column("source", sa.String(), nullable=False),
        sa.Column("content_hash", sa.String(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("mtime_ns", sa.BigInteger(), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("format", sa.String(), nullable=False),
        sa.Column("metadata", sa.Text(), nullable=False),
        sa.Column("indexed_at", sa.String(), nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_documents_content_hash", "documents", ["content_hash"])
    op.create_table(
        "chunks",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "document_id",
            sa.Integer(),
            sa.ForeignKey("documents.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("ordinal", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("context", sa.Text(), nullable=False),
        sa.Column("char_start", sa.Integer(), nullable=False),
        sa.Column("char_end", sa.Integer(), nullable=False),
        sa.Column("start_line", sa.Integer(), nullable=False),
        sa.Column("end_line", sa.Integer(), nullable=False),
        sa.Column("page", sa.Integer(), nullable=True),
        sa.Column("tokens", sa.Integer(), nullable=False),
        sa.Column("embed_hash", sa.String(), nullable=False),
        sa.Column("vector", sa.LargeBinary(), nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_chunks_embed_hash", "chunks", ["embed_hash"])
    op.create_index("ix_chunks_document_ordinal", "chunks", ["document_id", "ordinal"])

    # Keyword search: an external-content FTS5 table (the text lives only in `chunks`), with the
    # Porter stemmer over unicode61 so English stems and other scripts still tokenise.
    op.execute(
        "CREATE VIRTUAL TABLE chunk_fts USING fts5("
        "context, text, content='chunks', content_rowid='id', "
        "tokenize='porter unicode61 remove_diacritics 2')"
    )
    op.execute(
        "CREATE TRIGGER chunks_fts_insert AFTER INSERT ON chunks BEGIN "
        "INSERT INTO chunk_fts(rowid, context, text) VALUES (new.id, new.context, new.text); END"
    )
    op.execute(
        "CREATE TRIGGER chunks_fts_delete AFTER DELETE ON chunks BEGIN "
        "INSERT INTO chunk_fts(chunk_fts, rowid, context, text) "
        "VALUES ('delete', old.id, old.context, old.text); END"
    )
    op.execute(
        "CREATE TRIGGER chunks_fts_update AFTER UPDATE OF context, text ON chunks BEGIN "
        "INSERT INTO chunk_fts(chunk_fts, rowid, context, text) "
        "VALUES ('delete', old.id, old.context, old.text); "
        "INSERT INTO chunk_fts(rowid, context, text) VALUES (new.id, new.context, new.text); END"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS chunks_fts_update")
    op.execute("DROP TRIGGER IF EXISTS chunks_fts_delete")
    op.execute("DROP TRIGGER IF EXISTS chunks_fts_insert")
    op.execute("DROP TABLE IF EXISTS chunk_fts")
    op.drop_table("chunks")
    op.drop_table("documents")
    op.drop_table("settings")
