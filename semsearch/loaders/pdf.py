"""PDF: the text layer of each page, via pypdf.

:attr:`ParsedDocument.text` is the pages' texts joined by blank lines. Blocks are paragraphs within a
page: split on blank lines, or, since pypdf rarely emits those, cut after a short line that ends a
sentence, before a short heading-like line, and at least every 15 lines. ``page`` is 1-based and
``start_line``/``end_line`` count lines within that page. Typographic ligatures (``ﬁ``) are spelled
out so that words match.

Headings (blocks of kind ``"heading"`` with a level) come from the document outline (bookmarks)
when it has one: each entry is looked for, in order, among the lines of the page it points to,
numbering and spacing aside; an entry whose line is not found is left out. Without an outline,
they come from font sizes: a short line set in a font clearly larger than the body text's (the
size most characters have) is a heading, the largest size level 1, the next level 2 and so on,
provided little of the text is set in that size.
"""

from __future__ import annotations

import io
import logging
import math
import re
import statistics
from collections import Counter

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
_MAX_OUTLINE_ENTRIES = 2000  # an outline is read no further (a hostile one can be endless)
_HEADING_SCALE = 1.15  # a heading's font is at least this much larger than the body text's
_MAX_FONT_HEADING_CHARS = 80
_MAX_FONT_HEADING_SHARE = 0.1  # of the characters, at most, set in one heading size
_MAX_LEVEL = 6
_NUMBERING = re.compile(r"^[\d.\s]+")

Headings = list[tuple[str, int]]  # (the heading line's key, level), in page order


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

    outline = _outline(reader)
    texts: list[str] = []
    sized: list[list[tuple[str, float, int]]] = []  # each page's lines: (key, font size, characters)
    failed = 0
    for page in pages:
        sizes = _FontSizes() if not outline else None
        try:
            page_text = page.extract_text(visitor_text=sizes.visit if sizes else None) or ""
        except Exception:
            failed += 1
            page_text = ""
        sized.append(sizes.lines(page_text) if sizes else [])
        texts.append(_clean(page_text))
    if page_count and failed == page_count:
        raise LoaderError("unreadable pdf")
    if not any(text.strip() for text in texts):
        raise LoaderError("pdf has no text layer")

    headings = outline or _font_headings(sized)
    blocks: list[Block] = []
    offset = 0
    for number, page_text in enumerate(texts, start=1):
        blocks.extend(_page_blocks(page_text, offset, number, headings.get(number - 1, [])))
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


def _page_blocks(text: str, offset: int, page: int, headings: Headings) -> list[Block]:
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
    levels = _heading_lines(lines, headings)
    if levels:
        groups = [part for group in groups for part in _split_at(group, levels)]

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
        level = levels.get(first, 0) if first == last else 0
        blocks.append(Block(start, end, first + 1, last + 1, "heading" if level else "paragraph", level, page))
    return blocks


def _split_at(group: tuple[int, int], levels: dict[int, int]) -> list[tuple[int, int]]:
    """A group of lines cut so that each heading line is a group of its own."""
    first, last = group
    parts = []
    start = first
    for i in range(first, last + 1):
        if i in levels:
            if start < i:
                parts.append((start, i - 1))
            parts.append((i, i))
            start = i + 1
    if start <= last:
        parts.append((start, last))
    return parts


def _heading_lines(lines: list[str], headings: Headings) -> dict[int, int]:
    """Line number -> level for each heading found, in order, among the page's lines."""
    if not headings:
        return {}
    keys = [_key(line) for line in lines]
    found: dict[int, int] = {}
    start = 0
    for key, level in headings:
        for i in range(start, len(lines)):
            if keys[i] == key:
                found[i] = level
                start = i + 1
                break
    return found


def _key(text: str) -> str:
    """A heading as compared with a line: no numbering, spaces, punctuation or case."""
    return "".join(c for c in _NUMBERING.sub("", text.translate(_LIGATURES)).casefold() if c.isalnum())


def _outline(reader) -> dict[int, Headings]:
    """Page index -> the outline entries that point into it, in order, with their depth (from 1)."""
    try:
        items = reader.outline
    except Exception:
        return {}
    headings: dict[int, Headings] = {}
    stack = [(iter(items), 1)]
    entries = 0
    while stack and entries < _MAX_OUTLINE_ENTRIES:
        children, level = stack[-1]
        item = next(children, None)
        if item is None:
            stack.pop()
            continue
        if isinstance(item, list):  # the children of the entry before it
            if len(stack) < 64:
                stack.append((iter(item), level + 1))
            continue
        entries += 1
        try:
            page = reader.get_destination_page_number(item)
            key = _key(str(item.title or ""))
        except Exception:
            continue
        if page is not None and page >= 0 and len(key) >= 2:
            headings.setdefault(page, []).append((key, min(level, _MAX_LEVEL)))
    return headings


class _FontSizes:
    """The font size of every character pypdf writes out for one page (its ``visitor_text``)."""

    def __init__(self) -> None:
        self.runs: list[tuple[str, float]] = []

    def visit(self, text, cm, tm, _font, font_size) -> None:
        if text:
            try:  # the size on the page: the font size scaled by the text and user matrices
                a, b = tm[0] * cm[0] + tm[1] * cm[2], tm[0] * cm[1] + tm[1] * cm[3]
                c, d = tm[2] * cm[0] + tm[3] * cm[2], tm[2] * cm[1] + tm[3] * cm[3]
                size = round(float(font_size) * math.sqrt(abs(a * d - b * c)) * 2) / 2
            except Exception:
                size = 0.0
            self.runs.append((text, size))

    def lines(self, text: str) -> list[tuple[str, float, int]]:
        """Each line of ``text``: its key, the size most of its characters have, and how many
        characters it has (none if the runs do not spell the text)."""
        if "".join(run for run, _ in self.runs) != text:
            return []
        result = []
        counts: Counter[float] = Counter()
        line = []
        for run, size in self.runs:
            for part, newline in _line_parts(run):
                line.append(part)
                counts[size] += sum(not ch.isspace() for ch in part)
                if newline:
                    result.append(_sized_line("".join(line), counts))
                    line, counts = [], Counter()
        if line:
            result.append(_sized_line("".join(line), counts))
        return result


def _line_parts(run: str) -> list[tuple[str, bool]]:
    pieces = run.split("\n")
    return [(piece, i < len(pieces) - 1) for i, piece in enumerate(pieces)]


def _sized_line(line: str, counts: Counter[float]) -> tuple[str, float, int]:
    characters = sum(counts.values())
    size = counts.most_common(1)[0][0] if characters else 0.0
    # A line counts at a size only if nearly all of it is set in it (not a big initial, say).
    if characters and counts[size] < 0.8 * characters:
        size = 0.0
    stripped = line.strip()
    heading_like = len(stripped) <= _MAX_FONT_HEADING_CHARS and not stripped.endswith((".", ",", ";"))
    return _key(line) if heading_like else "", size, characters


def _font_headings(pages: list[list[tuple[str, float, int]]]) -> dict[int, Headings]:
    """Page index -> the lines set in fonts clearly larger than the body text, with levels.

    The body text's size is the one most characters have. A larger size is a heading size only
    if little of the text (:data:`_MAX_FONT_HEADING_SHARE` of the characters at most) is set in
    it: a second body font (a larger one for an abstract, say) is not a run of headings.
    """
    characters: Counter[float] = Counter()
    for lines in pages:
        for _, size, count in lines:
            characters[size] += count
    if not characters:
        return {}
    body_size = characters.most_common(1)[0][0]
    if body_size <= 0:
        return {}
    total = sum(characters.values())
    heading_sizes = sorted(
        (size for size, count in characters.items()
         if size >= body_size * _HEADING_SCALE and count <= _MAX_FONT_HEADING_SHARE * total),
        reverse=True,
    )
    levels = {size: min(rank, _MAX_LEVEL) for rank, size in enumerate(heading_sizes, start=1)}
    headings: dict[int, Headings] = {}
    for page, lines in enumerate(pages):
        for key, size, _ in lines:
            if size in levels and len(key) >= 2 and any(c.isalpha() for c in key):
                headings.setdefault(page, []).append((key, levels[size]))
    return headings


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
