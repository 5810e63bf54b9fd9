"""Heading paths: found in every format that has headings, stored, embedded and keyword-indexed
after the title, shown on hits, and brought to older indexes by re-embedding only what changed."""

from __future__ import annotations

import io
import json
import sqlite3

import pytest
from click.testing import CliRunner

import semsearch
import semsearch.ingest
from semsearch.cli import cli
from semsearch.ingest import MAX_CONTEXT_CHARS, chunk_context
from semsearch.types import SearchFilter
from conftest import database_at

MARKDOWN = """# Operations Manual

Read this first.

## Logging

Logs go to the journal.

### Rotation

Old files are compressed every night and deleted after a week.

## Backups

Snapshots run hourly.
"""

RST = """Operations Manual
=================

Logging
-------

Logs go to the journal.

Rotation
~~~~~~~~

Old files are compressed every night and deleted after a week.
"""

HTML = """<html><head><title>Operations Manual</title></head><body>
<h1>Operations Manual</h1><h2>Logging</h2><p>Logs go to the journal.</p>
<h3>Rotation</h3><p>Old files are compressed every night and deleted after a week.</p>
</body></html>"""


def docx_bytes() -> bytes:
    docx = pytest.importorskip("docx")
    document = docx.Document()
    document.add_heading("Operations Manual", 0)
    document.add_heading("Logging", 1)
    document.add_paragraph("Logs go to the journal.")
    document.add_heading("Rotation", 2)
    document.add_paragraph("Old files are compressed every night and deleted after a week.")
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


@pytest.mark.parametrize("name", ["manual.md", "manual.rst", "manual.html", "manual.docx"])
def test_every_format_with_headings_gives_hits_their_heading_path(tmp_path, fake_embedder, name):
    folder = tmp_path / "docs"
    folder.mkdir()
    content = {"manual.md": MARKDOWN, "manual.rst": RST, "manual.html": HTML}.get(name)
    (folder / name).write_bytes(content.encode() if content else docx_bytes())
    with semsearch.open(tmp_path / "index", embedder=fake_embedder) as engine:
        engine.index(folder)
        hit = engine.search("compressed every night", mode="keyword", limit=1)[0]
        journal = engine.search("journal", mode="keyword", limit=1)[0]
    assert hit.title == "Operations Manual"
    assert hit.heading == "Logging › Rotation"
    assert journal.heading == "Logging"
    assert hit.to_dict()["heading"] == "Logging › Rotation"
    # What the model saw: the title, then the headings, then the chunk.
    assert "Operations Manual › Logging › Rotation\nRotation" in "\n".join(fake_embedder.embedded)


def test_a_pdf_outline_gives_hits_their_heading_path(tmp_path, fake_embedder):
    from pdfgen import make_pdf
    from pypdf import PdfReader, PdfWriter

    pages = [["Operations Manual", "Logging", "Logs go to the journal.", "Rotation",
              "Old files are compressed every night and deleted after a week."]]
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(make_pdf(pages, title="Operations Manual"))))
    logging = writer.add_outline_item(title="Logging", page_number=0)
    writer.add_outline_item(title="Rotation", page_number=0, parent=logging)
    folder = tmp_path / "docs"
    folder.mkdir()
    with open(folder / "manual.pdf", "wb") as handle:
        writer.write(handle)
    with semsearch.open(tmp_path / "index", embedder=fake_embedder) as engine:
        engine.index(folder)
        hit = engine.search("compressed every night", mode="keyword", limit=1)[0]
    assert hit.heading == "Logging › Rotation" and hit.page == 1


def test_keyword_search_finds_every_chunk_of_a_section_by_its_heading(tmp_path, fake_embedder):
    body = " ".join(f"Sentence {n} says something about the system." for n in range(80))
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "manual.md").write_text(f"# Manual\n\n## Zymurgy\n\n{body}\n\n## Other\n\n{body}\n")
    with semsearch.open(tmp_path / "index", embedder=fake_embedder) as engine:
        engine.index(folder)
        hits = engine.search("zymurgy", mode="keyword", limit=50)
        in_section = [hit for hit in hits if hit.heading == "Zymurgy"]
        assert len(in_section) > 2  # the word is in one chunk's text, and in every one's context
        assert all(hit.heading == "Zymurgy" for hit in hits)


def test_search_shows_the_heading_path_on_screen_and_in_json(tmp_path, fake_model):
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "manual.md").write_text(MARKDOWN)
    runner = CliRunner()
    index = str(tmp_path / "index")
    assert runner.invoke(cli, ["--index", index, "index", str(folder)]).exit_code == 0
    shown = runner.invoke(cli, ["--index", index, "search", "compressed nightly", "--mode", "keyword", "-n", "1"])
    assert "Operations Manual › Logging › Rotation" in shown.output
    found = json.loads(runner.invoke(cli, ["--index", index, "search", "compressed", "--json", "-n", "1"]).output)
    assert found[0]["heading"] == "Logging › Rotation"


# -- the context string -------------------------------------------------------------------------


def test_chunk_context_puts_the_headings_after_the_title():
    assert chunk_context("Manual", ()) == "Manual"
    assert chunk_context("Manual", ("Logging", "Rotation")) == "Manual › Logging › Rotation"
    assert chunk_context("", ("Logging",)) == "Logging"
    assert chunk_context("", ()) == ""


def test_chunk_context_drops_the_outermost_headings_first_when_too_long():
    long = "x" * 120
    context = chunk_context("Manual", (long + "a", long + "b", "Rotation"))
    assert context == f"Manual › {long}b › Rotation"
    assert chunk_context("Manual", ("y" * 500,)) == "Manual › " + "y" * MAX_CONTEXT_CHARS


# -- older indexes ------------------------------------------------------------------------------


def test_an_older_index_is_brought_up_to_date_re_embedding_only_chunks_under_headings(
    tmp_path, docs, fake_embedder, monkeypatch
):
    with semsearch.open(tmp_path / "index", embedder=fake_embedder) as engine:
        # As version 2 wrote it: the title alone before each chunk, and no heading stored.
        monkeypatch.setattr(semsearch.ingest, "chunk_context", lambda title, headings: title)
        monkeypatch.setattr(semsearch.ingest, "INGEST_VERSION", 2)
        engine.index(docs)
        monkeypatch.undo()
        with sqlite3.connect(tmp_path / "index" / "semsearch.db") as connection:
            connection.execute("UPDATE chunks SET heading = ''")
        fake_embedder.embedded.clear()
        summary = engine.index(docs)
        # The Markdown and reST files are processed again; plain text has no headings to add.
        assert (summary.changed, summary.unchanged) == (3, 1)
        assert sorted(fake_embedder.embedded) == [
            "Baking bread › Crust\nCrust\n\nA hot oven and steam give bread a crisp crust.",
            "Growing tomatoes › Pests\nPests\n\nAphids and hornworms attack tomato plants; pick hornworms by hand.",
        ]
        assert summary.chunks_reused == summary.chunks_added - 2
        hit = engine.search("hornworms", mode="keyword", limit=1)[0]
        assert hit.heading == "Pests"
        assert engine.index(docs).unchanged == 4


def test_migration_0007_gives_existing_chunks_an_empty_heading(tmp_path):
    from semsearch.store import SCHEMA_HEAD, Store

    path = database_at(tmp_path / "semsearch.db", "0005")
    with sqlite3.connect(path) as connection:
        connection.execute(
            "INSERT INTO documents(path, source, content_hash, size, mtime_ns, title, format, metadata, indexed_at,"
            " ingest_version) VALUES ('/a.md', 'file', 'h', 1, 1, 'A', 'markdown', '{}', 'then', 2)"
        )
        connection.execute(
            "INSERT INTO chunks(document_id, ordinal, text, context, char_start, char_end, start_line, end_line, "
            "page, tokens, embed_hash, vector) VALUES (1, 0, 'badgers dig setts', 'A', 0, 17, 1, 1, NULL, 3, 'e', x'00')"
        )
    store = Store(path)
    assert store.schema_revision() == SCHEMA_HEAD
    rows = store.chunk_rows([1])
    assert rows[1].heading == "" and rows[1].text == "badgers dig setts"
    assert store.keyword_search("badgers", 5, SearchFilter(), weights=(1.0, 1.0))  # the keyword index is intact
    store.close()


def test_formats_without_headings_are_current_from_version_2():
    from semsearch.ingest import INGEST_VERSION, is_current
    from semsearch.rows import StoredDocument

    def stored(fmt: str, version: int) -> StoredDocument:
        return StoredDocument(1, "/x", "file", "h", 1, 1, "T", fmt, version)

    assert is_current(stored("text", 2)) and is_current(stored("code", 2))
    assert not is_current(stored("text", 1))
    assert not is_current(stored("markdown", 2)) and not is_current(stored("pdf", 2))
    assert is_current(stored("markdown", INGEST_VERSION))
