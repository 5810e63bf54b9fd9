"""Loaders: every format, titles, headings, line numbers, encodings, and bad input."""

from __future__ import annotations

import io
import logging
import random
from pathlib import Path

import pytest

from pdfgen import make_pdf
from semsearch.errors import LoaderError
from semsearch.loaders import is_supported, load, parse_text, unsupported_reason
from semsearch.types import ParsedDocument


def block_texts(doc: ParsedDocument, kind: str | None = None) -> list[str]:
    return [doc.text[b.start:b.end] for b in doc.blocks if kind is None or b.kind == kind]


def check_spans(doc: ParsedDocument) -> None:
    """Blocks are ordered, non-overlapping, non-empty and stripped; the title is never empty."""
    assert doc.title
    previous_end = 0
    for block in doc.blocks:
        piece = doc.text[block.start:block.end]
        assert piece and piece == piece.strip()
        assert block.start >= previous_end
        assert 1 <= block.start_line <= block.end_line
        previous_end = block.end


def check_source_lines(doc: ParsedDocument, source: str) -> None:
    """Each block's first and last text lines sit on its claimed source lines."""
    check_spans(doc)
    lines = source.replace("\r\n", "\n").split("\n")
    for block in doc.blocks:
        piece_lines = doc.text[block.start:block.end].split("\n")
        assert piece_lines[0].strip() in lines[block.start_line - 1], block
        assert piece_lines[-1].strip() in lines[block.end_line - 1], block
        claimed = "\n".join(lines[block.start_line - 1:block.end_line])
        for piece_line in piece_lines:
            assert piece_line.strip() in claimed


def write_load(tmp_path: Path, name: str, content: str | bytes) -> ParsedDocument:
    path = tmp_path / name
    data = content.encode("utf-8") if isinstance(content, str) else content
    path.write_bytes(data)
    return load(path, path.read_bytes())


# --- which files are supported ------------------------------------------------------------------


@pytest.mark.parametrize("name", [
    "notes.txt", "README.md", "guide.markdown", "pep-0008.rst", "page.html", "page.HTM", "paper.pdf",
    "report.docx", "main.py", "lib.rs", "app.ts", "config.yaml", "Cargo.toml", "data.csv", "style.css",
    "README", "LICENSE", "LICENSE-MIT", "COPYING", "Makefile", "Dockerfile", "CHANGELOG", "Dockerfile.dev",
    ".gitignore",
])
def test_supported_names(name):
    assert is_supported(Path(name))
    assert unsupported_reason(Path(name)) == ""


@pytest.mark.parametrize(("name", "reason"), [
    ("photo.png", "unsupported type .png"),
    ("archive.tar.gz", "unsupported type .gz"),
    ("slides.pptx", "unsupported type .pptx"),
    ("sheet.xlsx", "unsupported type .xlsx"),
    ("old.doc", "unsupported type .doc"),
    ("drawing.svg", "unsupported type .svg"),
    ("Cargo.lock", "generated file (.lock)"),
    ("yarn.lock", "generated file (.lock)"),
    ("app.min.js", "generated file (.min.js)"),
    ("site.min.css", "generated file (.min.css)"),
    ("package-lock.json", "generated file (package-lock.json)"),
    ("rustfmt-ignore", "unsupported type (no extension)"),
    ("readme_images.png", "unsupported type .png"),
])
def test_unsupported_names(name, reason):
    assert not is_supported(Path(name))
    assert unsupported_reason(Path(name)) == reason


def test_load_of_unsupported_name_raises_its_reason():
    with pytest.raises(LoaderError, match=r"^unsupported type \.png$"):
        load(Path("x.png"), b"\x89PNG\r\n")


# --- plain text ---------------------------------------------------------------------------------

PLAIN = """The Lighthouse Keeper

It was a dark night on the coast.
The lamp turned slowly.


A ship appeared at dawn,
its sails torn by the storm.
   Indented last line.
"""


def test_plain_text_paragraphs_and_lines(tmp_path):
    doc = write_load(tmp_path, "keeper.txt", PLAIN)
    assert doc.format == "text"
    assert doc.title == "The Lighthouse Keeper"
    assert block_texts(doc) == [
        "The Lighthouse Keeper",
        "It was a dark night on the coast.\nThe lamp turned slowly.",
        "A ship appeared at dawn,\nits sails torn by the storm.\n   Indented last line.",
    ]
    assert [(b.start_line, b.end_line) for b in doc.blocks] == [(1, 1), (3, 4), (7, 9)]
    assert all(b.kind == "paragraph" and b.page is None for b in doc.blocks)
    assert doc.metadata["encoding"] == "utf-8"
    check_source_lines(doc, PLAIN)


def test_plain_text_title_line_wins(tmp_path):
    text = "The Project Gutenberg eBook of Something\r\n\r\nTitle: The Blue Castle:\r\n       a novel\r\n\r\nAuthor: X\r\n"
    doc = write_load(tmp_path, "pg1.txt", text)
    assert doc.title == "The Blue Castle: a novel"
    assert "\r" not in doc.text
    check_source_lines(doc, text)


def test_plain_text_long_first_line_falls_back_to_stem(tmp_path):
    doc = write_load(tmp_path, "minutes-2024.txt", "word " * 40 + "\n\nsecond paragraph\n")
    assert doc.title == "minutes-2024"


def test_crlf_and_lone_cr_become_lf(tmp_path):
    doc = write_load(tmp_path, "a.txt", b"one\r\ntwo\r\n\r\nthree\rfour\r\n")
    assert doc.text == "one\ntwo\n\nthree\nfour\n"
    assert [(b.start_line, b.end_line) for b in doc.blocks] == [(1, 2), (4, 5)]


def test_long_runs_are_cut_into_blocks_of_bounded_size(tmp_path):
    text = "\n".join(f"row {i}, value {i * 3}" for i in range(120)) + "\n"
    doc = write_load(tmp_path, "table.txt", text)
    assert [(b.start_line, b.end_line) for b in doc.blocks] == [(1, 50), (51, 100), (101, 120)]
    check_source_lines(doc, text)


# --- encodings ----------------------------------------------------------------------------------

FRENCH = (
    "Le café était fermé quand nous sommes arrivés.\n"
    "Nous avons mangé une crème brûlée à côté de la forêt, près du théâtre.\n\n"
    "Ça coûte très cher, mais la qualité est là, disait le garçon naïvement.\n"
)


def test_latin1_file_is_decoded(tmp_path):
    doc = write_load(tmp_path, "menu.txt", FRENCH.encode("latin-1"))
    assert doc.text == FRENCH
    assert doc.metadata["encoding"] in ("cp1252", "latin_1", "iso8859_15")


@pytest.mark.parametrize("codec", ["utf-16", "utf-16-be", "utf-16-le"])
def test_utf16_with_bom_is_decoded(tmp_path, codec):
    data = FRENCH.replace("\n", "\r\n").encode(codec)
    if codec != "utf-16":
        data = ("\ufeff" + FRENCH.replace("\n", "\r\n")).encode(codec)
    doc = write_load(tmp_path, "menu.txt", data)
    assert doc.text == FRENCH
    assert doc.metadata["encoding"] == "utf-16"
    assert [(b.start_line, b.end_line) for b in doc.blocks] == [(1, 2), (4, 4)]


def test_utf8_bom_is_stripped(tmp_path):
    doc = write_load(tmp_path, "bom.md", "\ufeff# Heading\n\nBody.\n")
    assert doc.text.startswith("# Heading")
    assert doc.title == "Heading"


# --- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "data", "reason"), [
    ("empty.txt", b"", "empty file"),
    ("blank.md", b"  \n\t\r\n   \n", "empty file"),
    ("blank.rst", "\ufeff \n".encode("utf-8"), "empty file"),
    ("blank.py", b"\n\n", "empty file"),
    ("empty.pdf", b"", "empty file"),
    ("empty.docx", b"", "empty file"),
    ("data.txt", b"header\x00\x01\x02\x03 binary payload", "binary file"),
    ("image.md", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary file"),
    ("controls.txt", bytes(range(1, 9)) * 50, "binary file"),
])
def test_bad_input_reasons(tmp_path, name, data, reason):
    with pytest.raises(LoaderError) as caught:
        write_load(tmp_path, name, data)
    assert str(caught.value) == reason


def test_invalid_utf8_garbage_is_undecodable(tmp_path):
    rng = random.Random(7)
    garbage = bytes(rng.randrange(128, 256) for _ in range(4000))
    with pytest.raises(LoaderError) as caught:
        write_load(tmp_path, "notes.txt", garbage)
    assert str(caught.value) == "undecodable text"


def test_truncated_pdf_is_unreadable(tmp_path):
    data = make_pdf([[f"Line {i} of page {p}" for i in range(20)] for p in range(3)], title="Whole")
    with pytest.raises(LoaderError) as caught:
        write_load(tmp_path, "cut.pdf", data[: len(data) // 2])
    assert str(caught.value) == "unreadable pdf"


def test_not_a_pdf_is_unreadable(tmp_path):
    with pytest.raises(LoaderError, match="^unreadable pdf$"):
        write_load(tmp_path, "fake.pdf", b"this is plain text pretending to be a pdf\n" * 10)


def test_corrupt_docx_is_unreadable(tmp_path):
    rng = random.Random(11)
    with pytest.raises(LoaderError, match="^unreadable docx$"):
        write_load(tmp_path, "report.docx", bytes(rng.randrange(256) for _ in range(5000)))
    with pytest.raises(LoaderError, match="^unreadable docx$"):
        write_load(tmp_path, "zipped.docx", b"PK\x03\x04" + bytes(200))


def test_zip_that_is_not_a_word_file_is_unreadable(tmp_path):
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("hello.txt", "hello")
    with pytest.raises(LoaderError, match="^unreadable docx$"):
        write_load(tmp_path, "archive.docx", buffer.getvalue())


# --- Markdown -----------------------------------------------------------------------------------

MARKDOWN = """---
title: "Bicycle Care"
tags: [bikes]
---

Intro paragraph before any heading.

# Fixing a Flat Tyre

Remove the wheel first.
Then find the hole.

## Tools ##

```bash
# this is a shell comment, not a heading
pump --psi 60
```

Setext Heading
==============

Second Setext
-------------

~~~
# also not a heading
~~~

#NotAHeading because there is no space

* * *

### Last
Text right under the heading.
"""


def test_markdown_structure(tmp_path):
    doc = write_load(tmp_path, "bikes.md", MARKDOWN)
    assert doc.format == "markdown"
    assert doc.title == "Bicycle Care"  # front matter wins over the first heading
    headings = [(doc.text[b.start:b.end], b.level) for b in doc.blocks if b.kind == "heading"]
    assert headings == [
        ("Fixing a Flat Tyre", 1), ("Tools", 2), ("Setext Heading", 1), ("Second Setext", 2), ("Last", 3),
    ]
    assert block_texts(doc, "code") == [
        "# this is a shell comment, not a heading\npump --psi 60",
        "# also not a heading",
    ]
    paragraphs = block_texts(doc, "paragraph")
    assert paragraphs[0] == "Intro paragraph before any heading."
    assert "#NotAHeading because there is no space" in paragraphs
    assert not any("title:" in p for p in paragraphs)  # front matter is not content
    assert "* * *" not in paragraphs
    check_source_lines(doc, MARKDOWN)
    flat = next(b for b in doc.blocks if doc.text[b.start:b.end] == "Fixing a Flat Tyre")
    assert flat.start_line == flat.end_line == 8
    pump = next(b for b in doc.blocks if b.kind == "code")
    assert (pump.start_line, pump.end_line) == (16, 17)


def test_markdown_title_prefers_level_one_heading(tmp_path):
    doc = write_load(tmp_path, "x.md", "## Sub first\n\ntext\n\n# Main Title\n\nmore\n")
    assert doc.title == "Main Title"
    doc = write_load(tmp_path, "y.md", "## Only Sub\n\ntext\n")
    assert doc.title == "Only Sub"
    doc = write_load(tmp_path, "no-headings.md", "just text\n")
    assert doc.title == "no-headings"


def test_unclosed_fence_runs_to_end(tmp_path):
    doc = write_load(tmp_path, "open.md", "# T\n\n```\ncode line\n# still code\n")
    assert block_texts(doc, "code") == ["code line\n# still code"]
    assert [b.kind for b in doc.blocks] == ["heading", "code"]


# --- reStructuredText ---------------------------------------------------------------------------

PEP = """PEP: 9999
Title: Spaceships in the
       Standard Library
Author: Jane Doe <jane@example.org>
Status: Draft
Created: 01-Jan-2030


Abstract
========

This PEP proposes spaceships.

Motivation
==========

Details
-------

Some code follows::

    def launch():
        return "whoosh"

    launch()

Back to prose.

.. code-block:: python
   :caption: example

   print("hello")

..
   Local Variables:
   mode: indented-text
   End:
"""


def test_rst_pep_header_and_sections(tmp_path):
    doc = write_load(tmp_path, "pep-9999.rst", PEP)
    assert doc.format == "rst"
    assert doc.title == "Spaceships in the Standard Library"
    assert doc.metadata["pep"] == "9999"
    assert doc.metadata["author"] == "Jane Doe <jane@example.org>"
    assert doc.metadata["status"] == "Draft"
    headings = [(doc.text[b.start:b.end], b.level, b.start_line) for b in doc.blocks if b.kind == "heading"]
    assert headings == [("Abstract", 1, 9), ("Motivation", 1, 14), ("Details", 2, 17)]
    assert block_texts(doc, "code") == [
        'def launch():\n        return "whoosh"\n\n    launch()',
        'print("hello")',
    ]
    paragraphs = block_texts(doc, "paragraph")
    assert paragraphs == ["This PEP proposes spaceships.", "Some code follows::", "Back to prose."]
    assert not any("Local Variables" in text for text in block_texts(doc))
    assert not any("Author" in text for text in block_texts(doc))
    check_source_lines(doc, PEP)


def test_rst_overline_titles_and_levels_by_first_appearance(tmp_path):
    source = (
        "=========\n Overview \n=========\n\nIntro.\n\nPart A\n~~~~~~\n\nText A.\n\n"
        "Part B\n~~~~~~\n\nSub\n***\n\nDeep.\n\n----------\n\nAfter a transition.\n"
    )
    doc = write_load(tmp_path, "guide.rst", source)
    headings = [(doc.text[b.start:b.end], b.level) for b in doc.blocks if b.kind == "heading"]
    assert headings == [("Overview", 1), ("Part A", 2), ("Part B", 2), ("Sub", 3)]
    assert doc.title == "Overview"
    assert "After a transition." in block_texts(doc)
    assert "----------" not in block_texts(doc)
    check_source_lines(doc, source)


# --- HTML ---------------------------------------------------------------------------------------

HTML = """<!DOCTYPE html>
<html>
<head>
  <title>Solar System   Guide</title>
  <style>body { color: red; }</style>
  <script>var tracking = "do not index me";</script>
</head>
<body>
<header><a href="/">Home</a> | <a href="/about">About</a></header>
<nav><ul><li>Menu item</li></ul></nav>
<div role="navigation">Breadcrumbs here</div>
<main>
  <h1>The Planets</h1>
  <p>Mercury is the
     closest planet to the Sun.</p>
  <ul>
    <li>Venus is <em>hot</em>.</li>
    <li>Earth has <a href="#">life</a>.</li>
  </ul>
  <h2>Why is the sky blue?</h2>
  <p>Rayleigh scattering<br>of sunlight.</p>
  <pre><code>def orbit():
    return "ellipse"
</code></pre>
  <table><tr><th>Planet</th><td>Mars</td></tr></table>
  <div>Loose text in a div.<p>Nested paragraph.</p>Trailing text.</div>
  <!-- a comment that must not appear -->
  <form><input name="q"><button>Search</button></form>
</main>
<aside>Related links</aside>
<footer>Copyright 2030 Example Corp</footer>
</body>
</html>
"""


def test_html_content_and_boilerplate(tmp_path):
    doc = write_load(tmp_path, "planets.html", HTML)
    assert doc.format == "html"
    assert doc.title == "Solar System Guide"
    texts = block_texts(doc)
    assert texts == [
        "The Planets",
        "Mercury is the closest planet to the Sun.",
        "Venus is hot.",
        "Earth has life.",
        "Why is the sky blue?",
        "Rayleigh scattering\nof sunlight.",
        'def orbit():\n    return "ellipse"',
        "Planet",
        "Mars",
        "Loose text in a div.",
        "Nested paragraph.",
        "Trailing text.",
    ]
    for unwanted in ("tracking", "Menu item", "Breadcrumbs", "Copyright", "Related links", "Search",
                     "color: red", "comment", "Home"):
        assert unwanted not in doc.text
    kinds = [(b.kind, b.level) for b in doc.blocks]
    assert kinds[0] == ("heading", 1) and kinds[4] == ("heading", 2) and kinds[6] == ("code", 0)
    assert doc.text == "\n\n".join(texts)
    check_spans(doc)
    lines = {doc.text[b.start:b.end]: (b.start_line, b.end_line) for b in doc.blocks}
    assert lines["The Planets"] == (13, 13)
    assert lines["Mercury is the closest planet to the Sun."] == (14, 15)
    assert lines["Earth has life."] == (18, 18)
    assert lines['def orbit():\n    return "ellipse"'] == (22, 23)
    assert lines["Trailing text."] == (26, 26)


def test_html_title_falls_back_to_h1_then_stem(tmp_path):
    doc = write_load(tmp_path, "a.html", "<body><h2>Minor</h2><h1>Major  Heading</h1><p>x</p></body>")
    assert doc.title == "Major Heading"
    doc = write_load(tmp_path, "plain-page.htm", "<p>Only a paragraph.</p>")
    assert doc.title == "plain-page"


def test_html_header_inside_article_is_kept(tmp_path):
    doc = write_load(tmp_path, "post.html",
                     "<body><header>Site banner</header><article><header><h1>Post Title</h1></header>"
                     "<p>Body.</p></article></body>")
    assert block_texts(doc) == ["Post Title", "Body."]


def test_deeply_nested_html_does_not_overflow(tmp_path):
    doc = write_load(tmp_path, "deep.html", "<div>" * 3000 + "deep text" + "</div>" * 3000)
    assert block_texts(doc) == ["deep text"]


# --- PDF ----------------------------------------------------------------------------------------


def test_pdf_pages_title_and_lines(tmp_path):
    pages = [
        ["Astronomy Notes", "The sky is blue because of scattering.", "Short line."],
        ["Second page starts here.", "It has two lines."],
        [],
        ["Fourth page after an empty one."],
    ]
    doc = write_load(tmp_path, "astro.pdf", make_pdf(pages, title="Notes on the Sky"))
    assert doc.format == "pdf"
    assert doc.title == "Notes on the Sky"
    assert doc.metadata["pages"] == 4
    assert [b.page for b in doc.blocks] == [1, 2, 4]
    first, second, fourth = doc.blocks
    assert doc.text[first.start:first.end] == "\n".join(pages[0])
    assert (first.start_line, first.end_line) == (1, 3)
    assert doc.text[second.start:second.end] == "Second page starts here.\nIt has two lines."
    assert (second.start_line, second.end_line) == (1, 2)
    assert doc.text[fourth.start:fourth.end] == "Fourth page after an empty one."
    assert doc.text.split("\n\n") == ["\n".join(pages[0]), "\n".join(pages[1]), "", pages[3][0]]
    check_spans(doc)


@pytest.mark.parametrize(("meta_title", "expected"), [
    (None, "Astronomy Notes"),
    ("untitled", "Astronomy Notes"),
    ("astro.dvi", "Astronomy Notes"),
    ("Microsoft Word - astro notes.doc", "Astronomy Notes"),
    ("Real Title", "Real Title"),
])
def test_pdf_title_rules(tmp_path, meta_title, expected):
    doc = write_load(tmp_path, "astro.pdf", make_pdf([["Astronomy Notes", "body"]], title=meta_title))
    assert doc.title == expected


def test_pdf_title_falls_back_to_stem(tmp_path):
    doc = write_load(tmp_path, "long-first-line.pdf", make_pdf([["x" * 120, "body"]]))
    assert doc.title == "long-first-line"


def test_pdf_long_page_is_split_into_groups(tmp_path):
    lines = [f"This is line number {i} of a long page of running text." for i in range(1, 41)]
    doc = write_load(tmp_path, "long.pdf", make_pdf([lines]))
    assert len(doc.blocks) >= 3
    assert all(b.end_line - b.start_line < 15 for b in doc.blocks)
    page_lines = doc.text.split("\n")
    for block in doc.blocks:
        assert doc.text[block.start:block.end] == "\n".join(page_lines[block.start_line - 1:block.end_line])


def test_pdf_without_text_layer(tmp_path):
    with pytest.raises(LoaderError, match="^pdf has no text layer$"):
        write_load(tmp_path, "scan.pdf", make_pdf([[], []]))


def test_damaged_pdf_does_not_log(tmp_path, caplog):
    # Same-length corruption keeps the xref valid; pypdf then logs about the unknown font encoding.
    data = make_pdf([["Readable text"]]).replace(b"WinAnsiEncoding", b"WinAnsiEnNoding")
    with caplog.at_level(logging.DEBUG):
        doc = write_load(tmp_path, "odd.pdf", data)
    assert "Readable text" in doc.text
    assert not [record for record in caplog.records if record.name.startswith("pypdf")]


def test_encrypted_pdf(tmp_path):
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(make_pdf([["secret text"]]))))
    writer.encrypt(user_password="hunter2", owner_password="owner", algorithm="RC4-128")
    buffer = io.BytesIO()
    writer.write(buffer)
    with pytest.raises(LoaderError, match="^encrypted pdf$"):
        write_load(tmp_path, "locked.pdf", buffer.getvalue())

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(make_pdf([["open text"]]))))
    writer.encrypt(user_password="", owner_password="owner", algorithm="RC4-128")
    buffer = io.BytesIO()
    writer.write(buffer)
    doc = write_load(tmp_path, "owner-only.pdf", buffer.getvalue())
    assert block_texts(doc) == ["open text"]


# --- DOCX ---------------------------------------------------------------------------------------


def make_docx(path: Path, core_title: str | None = None, with_title_style: bool = True) -> None:
    import docx

    document = docx.Document()
    if core_title is not None:
        document.core_properties.title = core_title
    if with_title_style:
        document.add_paragraph("Employee Handbook", style="Title")  # paragraph 1
    document.add_heading("Vacation Policy", level=1)  # 2
    document.add_paragraph("Staff get 25 days of paid vacation per year.")  # 3
    document.add_paragraph("")  # 4 (empty, still counted)
    document.add_heading("Carry-over", level=2)  # 5
    table = document.add_table(rows=2, cols=2)
    table.cell(0, 0).text = "Days"  # 6
    table.cell(0, 1).text = "Up to 5"  # 7
    table.cell(1, 0).text = "Deadline"  # 8
    table.cell(1, 1).text = "31 March"  # 9
    document.add_paragraph("Ask HR for exceptions.")  # 10
    document.save(path)


def test_docx_structure(tmp_path):
    path = tmp_path / "handbook.docx"
    make_docx(path)
    doc = load(path, path.read_bytes())
    assert doc.format == "docx"
    assert doc.title == "Employee Handbook"
    assert [(doc.text[b.start:b.end], b.kind, b.level, b.start_line) for b in doc.blocks] == [
        ("Employee Handbook", "heading", 1, 1),
        ("Vacation Policy", "heading", 1, 2),
        ("Staff get 25 days of paid vacation per year.", "paragraph", 0, 3),
        ("Carry-over", "heading", 2, 5),
        ("Days", "paragraph", 0, 6),
        ("Up to 5", "paragraph", 0, 7),
        ("Deadline", "paragraph", 0, 8),
        ("31 March", "paragraph", 0, 9),
        ("Ask HR for exceptions.", "paragraph", 0, 10),
    ]
    assert doc.text == "\n\n".join(block_texts(doc))
    check_spans(doc)


def test_docx_title_order(tmp_path):
    path = tmp_path / "a.docx"
    make_docx(path, core_title="Official Handbook 2030")
    assert load(path, path.read_bytes()).title == "Official Handbook 2030"
    path = tmp_path / "b.docx"
    make_docx(path, with_title_style=False)
    assert load(path, path.read_bytes()).title == "Vacation Policy"


def test_docx_merged_cell_appears_once(tmp_path):
    import docx

    document = docx.Document()
    table = document.add_table(rows=1, cols=3)
    merged = table.cell(0, 0).merge(table.cell(0, 1))
    merged.text = "Spans two columns"
    table.cell(0, 2).text = "Alone"
    path = tmp_path / "merged.docx"
    document.save(path)
    doc = load(path, path.read_bytes())
    assert block_texts(doc) == ["Spans two columns", "Alone"]


def test_docx_without_text(tmp_path):
    import docx

    path = tmp_path / "blank.docx"
    docx.Document().save(path)
    with pytest.raises(LoaderError, match="^empty file$"):
        load(path, path.read_bytes())


# --- source code --------------------------------------------------------------------------------

CODE = '''import os


def main():
    # comment with # signs
    print(os.getcwd())

if __name__ == "__main__":
    main()
'''


def test_source_code_blocks(tmp_path):
    doc = write_load(tmp_path, "tool.py", CODE)
    assert doc.format == "code"
    assert doc.title == "tool.py"
    assert [(b.kind, b.start_line, b.end_line) for b in doc.blocks] == [
        ("code", 1, 1), ("code", 4, 6), ("code", 8, 9),
    ]
    check_source_lines(doc, CODE)


def test_extensionless_known_names(tmp_path):
    doc = write_load(tmp_path, "LICENSE-MIT", "MIT License\n\nPermission is hereby granted.\n")
    assert doc.format == "text" and doc.title == "MIT License"
    doc = write_load(tmp_path, "Makefile", "all:\n\techo hi\n")
    assert doc.format == "code" and doc.title == "Makefile"


# --- parse_text ---------------------------------------------------------------------------------


def test_parse_text_plain():
    doc = parse_text("First line\r\nsecond\r\n\r\nThird\n", title="Note")
    assert doc.title == "Note"
    assert doc.format == "text"
    assert block_texts(doc) == ["First line\nsecond", "Third"]
    assert [(b.start_line, b.end_line) for b in doc.blocks] == [(1, 2), (4, 4)]


def test_parse_text_title_and_format():
    doc = parse_text("Shopping list\n\neggs\n")
    assert doc.title == "Shopping list"
    doc = parse_text("x" * 200)
    assert doc.title == "untitled"
    doc = parse_text("# Heading\n\nbody\n", format="markdown")
    assert doc.format == "markdown" and doc.title == "Heading"
    assert [b.kind for b in doc.blocks] == ["heading", "paragraph"]
    doc = parse_text("a note", format="note")
    assert doc.format == "note"


def test_parse_text_rejects_empty():
    with pytest.raises(LoaderError, match="^empty text$"):
        parse_text(" \n\t")


def with_outline(data: bytes, entries: list[tuple[str, int, int]]) -> bytes:
    """The PDF with an outline: (title, page index, depth from 1) in order."""
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(data)))
    parents: dict[int, object] = {}
    for title, page, depth in entries:
        parents[depth] = writer.add_outline_item(title=title, page_number=page, parent=parents.get(depth - 1))
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def headings_of(doc: ParsedDocument) -> list[tuple[int, str, int | None]]:
    return [(b.level, doc.text[b.start:b.end], b.page) for b in doc.blocks if b.kind == "heading"]


def test_pdf_outline_entries_become_headings_where_their_lines_are(tmp_path):
    pages = [
        ["Field Guide", "1 Birds of the shore", "Gulls and terns nest on shingle.", "1.1 Waders",
         "Curlews probe the mud with long bills."],
        ["2 Birds of the wood", "Woodpeckers drum on dead branches."],
    ]
    outline = [("Birds of the shore", 0, 1), ("1.1  Waders", 0, 2), ("Not in the text", 0, 2),
               ("2 Birds of the wood", 1, 1)]
    doc = write_load(tmp_path, "guide.pdf", with_outline(make_pdf(pages, title="Field Guide"), outline))
    assert headings_of(doc) == [(1, "1 Birds of the shore", 1), (2, "1.1 Waders", 1), (1, "2 Birds of the wood", 2)]
    check_spans(doc)
    assert block_texts(doc)[0] == "Field Guide"  # the line before the first heading stays a paragraph


def test_pdf_font_sizes_make_headings_when_there_is_no_outline(tmp_path):
    body = [f"Line {i} of ordinary running text set in the body size." for i in range(30)]
    pages = [
        [("Chapter One", 20), *body[:10], ("A Section", 14), *body[10:20]],
        [("Another Section", 14), *body[20:], ("1", 14)],  # a lone number is no heading
    ]
    doc = write_load(tmp_path, "sizes.pdf", make_pdf(pages))
    assert headings_of(doc) == [(1, "Chapter One", 1), (2, "A Section", 1), (2, "Another Section", 2)]
    check_spans(doc)


def test_pdf_where_much_text_is_large_has_no_font_headings(tmp_path):
    pages = [[("Big text line number %d" % i, 16) for i in range(5)] + [f"small body line {i}" for i in range(20)]]
    doc = write_load(tmp_path, "posters.pdf", make_pdf(pages))
    assert headings_of(doc) == []
