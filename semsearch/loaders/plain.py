"""Plain text and source code: blocks are runs of lines separated by blank lines."""

from __future__ import annotations

import re

from semsearch.loaders.lines import SourceLines
from semsearch.types import ParsedDocument

# Project Gutenberg files (and many other plain-text documents) carry a "Title: ..." line near the top.
_TITLE_LINE = re.compile(r"^[ \t]*Title:[ \t]*(\S.*?)[ \t]*$", re.MULTILINE)
_TITLE_SEARCH_LINES = 60
_MAX_TITLE_CHARS = 100


def parse_plain(text: str, fallback_title: str, format: str = "text", encoding: str | None = None) -> ParsedDocument:
    """Parse plain text whose newlines are already ``\\n``."""
    source = SourceLines(text)
    blocks = source.paragraphs(0, len(source))
    metadata = {"encoding": encoding} if encoding else {}
    return ParsedDocument(text, plain_title(source, fallback_title), format, tuple(blocks), metadata)


def parse_code(text: str, file_name: str, encoding: str | None = None) -> ParsedDocument:
    """Parse a source or configuration file; every block is ``"code"`` and the title is the file name."""
    source = SourceLines(text)
    blocks = source.paragraphs(0, len(source), kind="code")
    metadata = {"encoding": encoding} if encoding else {}
    return ParsedDocument(text, file_name, "code", tuple(blocks), metadata)


def plain_title(source: SourceLines, fallback: str) -> str:
    """A ``Title:`` line in the first lines, else the first line if it is short, else ``fallback``."""
    head_end = source.offsets[min(_TITLE_SEARCH_LINES, len(source))]
    match = _TITLE_LINE.search(source.text, 0, head_end)
    if match:
        title = match.group(1)
        following = _line_after(source.text, match.end())
        if following[:1] in (" ", "\t") and following.strip():  # "Title: The Blue Castle:\n    a novel"
            title = f"{title} {following.strip()}"
        return title[: 2 * _MAX_TITLE_CHARS]
    for line in source.lines[:_TITLE_SEARCH_LINES]:
        stripped = line.strip()
        if stripped:
            return stripped if len(stripped) < _MAX_TITLE_CHARS else fallback
    return fallback


def _line_after(text: str, position: int) -> str:
    """The line following the one that contains ``position``."""
    start = text.find("\n", position) + 1
    if not start:
        return ""
    end = text.find("\n", start)
    return text[start:] if end < 0 else text[start:end]
