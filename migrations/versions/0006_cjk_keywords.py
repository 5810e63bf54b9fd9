"""Keyword search in Chinese, Japanese and Korean: chunk_fts indexes CJK runs as bigrams.

``chunk_fts`` now takes its external content from the view ``chunk_fts_source``, which is each
chunk's context and text passed through ``keyword_text()`` (semsearch.cjk.keyword_text, which
every semsearch connection registers): a run of CJK characters becomes its overlapping bigrams,
and any other text is left exactly as it was. The triggers insert and delete the same values.
SQLite calls the function only for a value with a character outside ASCII (its length in
characters differs from its length in bytes: two C calls): ASCII text is its own keyword text,
and costs no call into Python (nor gives a Ctrl-C the chance to land inside one, where SQLite
would report it as a failed function). A GLOB over the CJK blocks was 13 times slower than the
call it saves.

The table is built again from the chunks already stored: nothing is embedded, and for text with
no CJK character every token, and so every BM25 score, is what it was.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_TRIGGERS = ("chunks_fts_insert", "chunks_fts_delete", "chunks_fts_update")
_KEYWORD_TEXT = "CASE WHEN length({0}) = length(CAST({0} AS BLOB)) THEN {0} ELSE keyword_text({0}) END"


def _create(content: str, value: str) -> None:
    """chunk_fts over ``content``, and triggers that index ``value`` (a format with ``{}``) of a row."""
    op.execute(
        "CREATE VIRTUAL TABLE chunk_fts USING fts5("
        f"context, text, content='{content}', content_rowid='id', "
        "tokenize='porter unicode61 remove_diacritics 2')"
    )
    new = f"{value.format('new.context')}, {value.format('new.text')}"
    old = f"{value.format('old.context')}, {value.format('old.text')}"
    op.execute(
        "CREATE TRIGGER chunks_fts_insert AFTER INSERT ON chunks BEGIN "
        f"INSERT INTO chunk_fts(rowid, context, text) VALUES (new.id, {new}); END"
    )
    op.execute(
        "CREATE TRIGGER chunks_fts_delete AFTER DELETE ON chunks BEGIN "
        f"INSERT INTO chunk_fts(chunk_fts, rowid, context, text) VALUES ('delete', old.id, {old}); END"
    )
    op.execute(
        "CREATE TRIGGER chunks_fts_update AFTER UPDATE OF context, text ON chunks BEGIN "
        f"INSERT INTO chunk_fts(chunk_fts, rowid, context, text) VALUES ('delete', old.id, {old}); "
        f"INSERT INTO chunk_fts(rowid, context, text) VALUES (new.id, {new}); END"
    )
    op.execute("INSERT INTO chunk_fts(chunk_fts) VALUES ('rebuild')")


def _drop() -> None:
    for trigger in _TRIGGERS:
        op.execute(f"DROP TRIGGER IF EXISTS {trigger}")
    op.execute("DROP TABLE IF EXISTS chunk_fts")


def upgrade() -> None:
    _drop()
    op.execute(
        "CREATE VIEW chunk_fts_source AS SELECT id, "
        f"{_KEYWORD_TEXT.format('context')} AS context, {_KEYWORD_TEXT.format('text')} AS text FROM chunks"
    )
    _create("chunk_fts_source", _KEYWORD_TEXT)


def downgrade() -> None:
    _drop()
    op.execute("DROP VIEW IF EXISTS chunk_fts_source")
    _create("chunks", "{}")
