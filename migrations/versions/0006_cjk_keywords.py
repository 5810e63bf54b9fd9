"""Keyword search in Chinese, Japanese and Korean: chunk_fts indexes CJK runs as bigrams.

``chunk_fts`` now takes its external content from the view ``chunk_fts_source``, which is each
chunk's context and text passed through ``keyword_text()`` (semsearch.cjk.keyword_text, which
every semsearch connection registers): a run of CJK characters becomes its overlapping bigrams,
and any other text is left exactly as it was. The triggers insert and delete the same values.
SQLite calls the function only for a value holding a character of the CJK blocks (a GLOB, in
C): text without one is its own keyword text, and costs no call into Python (nor gives a
Ctrl-C the chance to land inside one, where SQLite would report it as a failed function).

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
# Every character semsearch.cjk treats as CJK lies in these ranges (tests/test_cjk.py checks it);
# a few others do too, which keyword_text() then leaves as they are.
_CJK_GLOB = (
    "*[\u1100-\u11ff\u3005-\u3007\u3040-\u30ff\u3100-\u31ff\u3400-\u4dbf\u4e00-\u9fff"
    "\ua960-\ua97f\uac00-\ud7ff\uf900-\ufaff\uff66-\uffdc\U00020000-\U0003134f]*"
)
_KEYWORD_TEXT = f"CASE WHEN {{0}} GLOB '{_CJK_GLOB}' THEN keyword_text({{0}}) ELSE {{0}} END"


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
