"""PDF: the text layer of each page, via pypdf.

:attr:`ParsedDocument.text` is the pages' texts joined by blank lines. Blocks are paragraphs within a
page: split on blank lines, or, since pypdf rarely emits those, cut after a short line that ends a
sentence, before a short heading-like line, and at least every 15 lines. ``page`` is 1-based and
``start_line``/``end_line`` count lines within that page. Typographic ligatures (``ﬁ``) are spelled
out so that words match.
"""

from __future__ import annotations

import io
import logging
import re
import statistics

from semsearch.errors import LoaderError
from semsearch.types import Block, ParsedDocument

# pypdf reports every oddity of a damaged file through this logger, recoverable ones included at ERROR
# level ("Advanced encoding ... not implemented yet"); a bad PDF is one skip reason in the summary, not
# a screenful of log lines.
logging.getLogger("pypdf").setLevel(logging.CRITICAL)

_GROUP_LINES = 15
_MIN_GROUP_LINES = 3
_PARAGRAPH_END_SHARE = 0.85
_HEADING_SHARE = 0.6
_SENTENCE_END = (".", "!", "?", ":", '."', ".)")
_FILENAME_TITLE = re.compile(
    r"^(microsoft (word|powerpoint|excel) - .*|.*\.(dvi|tex|docx?|pdf|ps|eps|odt|rtf|txt|indd|qxd))$",
    re.IGNORECASE,
)
_SECTION_HEADING = re.compile(r"^\d+(\.\d+)*\.?\s+[A-Z]")
_MAX_HEADING_CHARS = 60
# Typographic ligatures that TeX and Word output leave in the text layer ("ﬁle" would not match "file").
_LIGATURES = str.maketrans({"\ufb00": "ff", "\ufb01": "fi", "\ufb02": "fl", "\ufb03": "ffi", "\ufb04": "ffl",
                            "\ufb05": "st", "\ufb06": "st"})
_TITLE_MARKS = "∗*†‡ "
_PLACEHOLDER_TITLES = frozenset({"untitled", "untitled document", "title", "document", "no title", "none"})
_MAX_TITLE_CHARS = 100


def parse_pdf(data: bytes, fallback_title: str) -> ParsedDocument:
    """Extract the text layer of a PDF; raises :class:`LoaderError` when there is none."""
    from pypdf import PdfReader

    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted:
            _decrypt(reader)
        pages = reader.pages
        page_count = len(pages)
    except LoaderError:
        raise
    except Exception as error:
        raise LoaderError("unreadable pdf") from error

    texts: list[str] = []
    failed = 0
    for page in pages:
        try:
            page_text = page.extract_text() or ""
        except Exception:
            failed += 1
            page_text = ""
        texts.append(_clean(page_text))
    if page_count and failed == page_count:
        raise LoaderError("unreadable pdf")
    if not any(text.strip() for text in texts):
        raise LoaderError("pdf has no text layer")

    blocks: list[Block] = []
    offset = 0
    for number, page_text in enumerate(texts, start=1):
        blocks.extend(_page_blocks(page_text, offset, number))
        offset += len(page_text) + 2
    metadata: dict = {"pages": page_count}
    if failed:
        metadata["pages_failed"] = failed
    title = _metadata_title(reader) or _first_line_title(texts) or fallback_title
    return ParsedDocument("\n\n".join(texts), title, "pdf", tuple(blocks), metadata)


def _decrypt(reader) -> None:
    try:
        opened = reader.decrypt("")
    except Exception as error:  # e.g. AES without the optional cryptography package
        raise LoaderError("encrypted pdf") from error
    if not opened:
        raise LoaderError("encrypted pdf")


def _clean(text: str) -> str:
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if "\x00" in text:
        text = text.replace("\x00", "")
    return text.translate(_LIGATURES).strip("\n")


def _page_blocks(text: str, offset: int, page: int) -> list[Block]:
    lines = text.split("\n")
    blank = [not line.strip() for line in lines]
    groups: list[tuple[int, int]] = []
    if any(blank):
        start = -1
        for i, is_blank in enumerate(blank):
            if is_blank:
                if start >= 0:
                    groups.extend(_cut(lines, start, i - 1))
                    start = -1
            elif start < 0:
                start = i
        if start >= 0:
            groups.extend(_cut(lines, start, len(lines) - 1))
    elif lines:
        groups = _cut(lines, 0, len(lines) - 1)

    starts = [0] * len(lines)
    position = offset
    for i, line in enumerate(lines):
        starts[i] = position
        position += len(line) + 1
    blocks = []
    for first, last in groups:
        while first <= last and blank[first]:
            first += 1
        while last >= first and blank[last]:
            last -= 1
        if first > last:
            continue
        head = lines[first]
        start = starts[first] + len(head) - len(head.lstrip())
        end = starts[last] + len(lines[last].rstrip())
        blocks.append(Block(start, end, first + 1, last + 1, "paragraph", 0, page))
    return blocks


def _cut(lines: list[str], first: int, last: int) -> list[tuple[int, int]]:
    """Split lines ``first..last`` into paragraph-sized groups.

    A group ends after a line that finishes a sentence well short of the usual line width (the last
    line of a paragraph), before a short unpunctuated line that follows a finished sentence (a
    heading), or after _GROUP_LINES lines.
    """
    if last - first + 1 <= _MIN_GROUP_LINES:
        return [(first, last)]
    stripped = [lines[i].strip() for i in range(first, last + 1)]
    typical = statistics.median(len(line) for line in stripped)
    groups = []
    start = first
    previous_ends_sentence = True
    for i, line in zip(range(first, last + 1), stripped):
        ends_sentence = line.endswith(_SENTENCE_END)
        if i > start and previous_ends_sentence and _is_heading(line, typical):
            groups.append((start, i - 1))
            start = i
        elif i - start + 1 >= _GROUP_LINES or (
            i > start and ends_sentence and len(line) < _PARAGRAPH_END_SHARE * typical
        ):
            groups.append((start, i))
            start = i + 1
        previous_ends_sentence = ends_sentence
    if start <= last:
        groups.append((start, last))
    return groups


def _is_heading(line: str, typical: float) -> bool:
    if not line or len(line) > _MAX_HEADING_CHARS or line.endswith(_SENTENCE_END + (",", ";")):
        return False
    return bool(_SECTION_HEADING.match(line)) or (line[0].isupper() and len(line) < _HEADING_SHARE * typical)


def _metadata_title(reader) -> str:
    try:
        raw = reader.metadata.title if reader.metadata else None
    except Exception:
        return ""
    title = " ".join(str(raw or "").split()).rstrip(_TITLE_MARKS)
    if not title or title.lower() in _PLACEHOLDER_TITLES or _FILENAME_TITLE.match(title):
        return ""
    return title if len(title) <= 2 * _MAX_TITLE_CHARS else ""


def _first_line_title(texts: list[str]) -> str:
    first_page = next((text for text in texts if text.strip()), "")
    for line in first_page.split("\n"):
        stripped = " ".join(line.split())
        if stripped:
            stripped = stripped.rstrip(_TITLE_MARKS)
            return stripped if len(stripped) < _MAX_TITLE_CHARS else ""
    return ""
