"""Build the PDF and DOCX files of the sample corpus from their sources in ``corpora/.sources/``.

Run from the repository root with the project's virtualenv (python-docx is a dependency):

    .venv/bin/python corpora/build_binary_docs.py

Each source is a small Markdown subset: ``# Title``, ``## Section`` headings, paragraphs separated by
blank lines, and ``| a | b |`` table rows. The sources live in a hidden folder so that indexing
``corpora/`` finds each text once, in the generated PDF or DOCX, and not a second time in its source.
PDFs are written by the dependency-free writer in ``tests/pdfgen.py``; DOCX files by python-docx. The
output is deterministic (fixed zip timestamps and document dates): rebuilding changes a file only when
its source changes.
"""

from __future__ import annotations

import datetime
import io
import sys
import textwrap
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCES = HERE / ".sources"
sys.path.insert(0, str(HERE.parent / "tests"))

from pdfgen import make_pdf  # noqa: E402

LINE_WIDTH = 88
LINES_PER_PAGE = 34
FIXED_TIME = datetime.datetime(2024, 1, 1, 12, 0, 0)

PDFS = {
    "solar-system-tour": "science/solar-system-tour.pdf",
    "history-of-timekeeping": "history/history-of-timekeeping.pdf",
    "expense-policy": "larkspur-handbook/expense-policy.pdf",
}
DOCXS = {
    "remote-work-policy": "larkspur-handbook/remote-work-policy.docx",
    "household-budget": "money/household-budget.docx",
}


@dataclass
class Section:
    heading: str
    paragraphs: list[str] = field(default_factory=list)
    table: list[list[str]] = field(default_factory=list)


@dataclass
class Source:
    title: str
    sections: list[Section]


def read_source(path: Path) -> Source:
    """Parse the Markdown subset described in the module docstring."""
    title = ""
    sections = [Section("")]
    for chunk in path.read_text(encoding="utf-8").split("\n\n"):
        chunk = chunk.strip()
        if not chunk:
            continue
        if chunk.startswith("## "):
            sections.append(Section(chunk[3:].strip()))
        elif chunk.startswith("# "):
            title = chunk[2:].strip()
        elif chunk.startswith("|"):
            sections[-1].table = [[cell.strip() for cell in row.strip().strip("|").split("|")]
                                  for row in chunk.splitlines()]
        else:
            sections[-1].paragraphs.append(" ".join(chunk.split()))
    return Source(title, [s for s in sections if s.heading or s.paragraphs or s.table])


def pdf_pages(source: Source) -> list[list[str]]:
    """Lay a document out as pages of lines: title, headings, wrapped paragraphs, blank lines."""
    lines = [source.title, ""]
    for section in source.sections:
        if section.heading:
            lines += [section.heading, ""]
        for paragraph in section.paragraphs:
            lines += textwrap.wrap(paragraph, LINE_WIDTH) + [""]
        for row in section.table:
            lines.append("    ".join(cell for cell in row if cell))
    pages: list[list[str]] = []
    for start in range(0, len(lines), LINES_PER_PAGE):
        page = lines[start:start + LINES_PER_PAGE]
        while page and not page[0]:
            page = page[1:]
        pages.append(page)
    return pages


def build_pdf(source: Source, path: Path) -> None:
    path.write_bytes(make_pdf(pdf_pages(source), title=source.title))


def build_docx(source: Source, path: Path) -> None:
    import docx

    word = docx.Document()
    properties = word.core_properties
    properties.title = source.title
    properties.author = properties.last_modified_by = "semsearch sample corpus"
    properties.created = properties.modified = FIXED_TIME
    word.add_paragraph(source.title, style="Title")
    for section in source.sections:
        if section.heading:
            word.add_heading(section.heading, level=1)
        for paragraph in section.paragraphs:
            word.add_paragraph(paragraph)
        if section.table:
            table = word.add_table(rows=len(section.table), cols=len(section.table[0]))
            table.style = "Table Grid"
            for r, row in enumerate(section.table):
                for c, value in enumerate(row):
                    table.cell(r, c).text = value
    buffer = io.BytesIO()
    word.save(buffer)
    path.write_bytes(_fixed_zip_times(buffer.getvalue()))


def _fixed_zip_times(data: bytes) -> bytes:
    """Rewrite a zip with constant member timestamps so identical content gives identical bytes."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as source, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            target.writestr(zipfile.ZipInfo(info.filename, date_time=FIXED_TIME.timetuple()[:6]),
                            source.read(info.filename), compress_type=zipfile.ZIP_DEFLATED)
    return out.getvalue()


def main() -> None:
    for name, target in PDFS.items():
        build_pdf(read_source(SOURCES / f"{name}.md"), HERE / target)
    for name, target in DOCXS.items():
        build_docx(read_source(SOURCES / f"{name}.md"), HERE / target)
    print(f"built {len(PDFS)} PDFs and {len(DOCXS)} DOCX files under {HERE}")


if __name__ == "__main__":
    main()
