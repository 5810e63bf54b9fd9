"""Word documents (.docx), via python-docx.

DOCX has no lines, so ``start_line``/``end_line`` are 1-based *paragraph numbers*: every paragraph of
the body counts, in document order, including empty ones and the paragraphs inside table cells, so a
number can be found again by walking the document the same way. Paragraphs styled "Title" or
"Heading N" are heading blocks; each table cell is one paragraph block. :attr:`ParsedDocument.text` is
the blocks' texts joined by blank lines.
"""

from __future__ import annotations

import io
import re

from semsearch.errors import LoaderError
from semsearch.types import Block, ParsedDocument

_HEADING_STYLE = re.compile(r"^heading\s*(\d)", re.IGNORECASE)


def parse_docx(data: bytes, fallback_title: str) -> ParsedDocument:
    """Extract the paragraphs and table cells of a .docx file."""
    try:
        from docx import Document

        document = Document(io.BytesIO(data))
        pieces, paragraphs = _pieces(document)
        core_title = (document.core_properties.title or "").strip()
    except LoaderError:
        raise
    except Exception as error:
        raise LoaderError("unreadable docx") from error

    parts: list[str] = []
    blocks: list[Block] = []
    offset = 0
    title_style = first_heading = ""
    for text, first, last, kind, level in pieces:
        if parts:
            parts.append("\n\n")
            offset += 2
        parts.append(text)
        blocks.append(Block(offset, offset + len(text), first, last, kind, level))
        offset += len(text)
        if kind == "heading":
            if level == 0 and not title_style:
                title_style = text
            elif not first_heading:
                first_heading = text
    if not blocks:
        raise LoaderError("empty file")
    for i, block in enumerate(blocks):
        if block.kind == "heading" and block.level == 0:  # "Title" style sits above Heading 1
            blocks[i] = Block(block.start, block.end, block.start_line, block.end_line, "heading", 1)
    title = " ".join((core_title or title_style or first_heading or fallback_title).split())
    return ParsedDocument("".join(parts), title, "docx", tuple(blocks), {"paragraphs": paragraphs})


def _pieces(document) -> tuple[list[tuple[str, int, int, str, int]], int]:
    """``(text, first paragraph, last paragraph, kind, level)`` for each non-empty block, and the
    number of paragraphs seen."""
    from docx.table import Table

    pieces: list[tuple[str, int, int, str, int]] = []
    number = 0
    styles: dict[str | None, tuple[str, int]] = {}
    for item in document.iter_inner_content():
        if isinstance(item, Table):
            number = _table(item, number, pieces)
            continue
        number += 1
        text = item.text.strip()
        if text:
            kind, level = _style(item, styles)
            pieces.append((text, number, number, kind, level))
    return pieces, number


def _table(table, number: int, pieces: list) -> int:
    """Add one block per table cell (nested tables in document order); returns the paragraph count."""
    from docx.table import Table

    seen = set()
    for row in table.rows:
        for cell in row.cells:
            if cell._tc in seen:  # a merged cell is repeated once per grid column it spans
                continue
            seen.add(cell._tc)
            texts: list[str] = []
            first = last = 0
            for item in cell.iter_inner_content():
                if isinstance(item, Table):
                    _add_cell(texts, first, last, pieces)
                    texts = []
                    number = _table(item, number, pieces)
                    continue
                number += 1
                if item.text.strip():
                    if not texts:
                        first = number
                    last = number
                    texts.append(item.text.strip())
            _add_cell(texts, first, last, pieces)
    return number


def _add_cell(texts: list[str], first: int, last: int, pieces: list) -> None:
    if texts:
        pieces.append(("\n".join(texts), first, last, "paragraph", 0))


def _style(paragraph, styles: dict[str | None, tuple[str, int]]) -> tuple[str, int]:
    """The block kind and heading level of a paragraph's style, looked up once per style: python-docx
    scans every style of the document to find the default one, 7 ms for each unstyled paragraph."""
    try:
        style_id = paragraph._p.style  # None: the default paragraph style
    except Exception:
        return _style_kind(paragraph)
    if style_id not in styles:
        styles[style_id] = _style_kind(paragraph)
    return styles[style_id]


def _style_kind(paragraph) -> tuple[str, int]:
    try:
        style = paragraph.style
        name = (style.name if style is not None else "") or ""
    except Exception:
        return "paragraph", 0
    if name.lower() == "title":
        return "heading", 0
    match = _HEADING_STYLE.match(name)
    if match:
        return "heading", max(1, int(match.group(1)))
    return "paragraph", 0
