"""Markdown: ATX and setext headings, fenced code blocks, YAML/TOML front matter, paragraphs.

The text is kept as written; blocks point into it. A heading block spans only the heading's words
(``## Data Types`` gives ``Data Types``); a fenced code block spans the lines between its fences.
"""

from __future__ import annotations

import re

from semsearch.loaders.lines import SourceLines
from semsearch.types import Block, ParsedDocument

_ATX = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
_FENCE_OPEN = re.compile(r"^ {0,3}(`{3,}|~{3,})(.*)$")
_FENCE_CLOSE = re.compile(r"^ {0,3}(`{3,}|~{3,})[ \t]*$")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_THEMATIC_BREAK = re.compile(r"^ {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*$")
_FRONT_MATTER_TITLE = re.compile(r"^title[ \t]*[:=][ \t]*(.*?)[ \t]*$", re.IGNORECASE)
_FRONT_MATTER_MAX_LINES = 200
_FRONT_MATTER_KEY = re.compile(r"^[A-Za-z_][\w-]*[ \t]*[:=]")


def parse_markdown(text: str, fallback_title: str, encoding: str | None = None) -> ParsedDocument:
    """Parse Markdown whose newlines are already ``\\n``."""
    source = SourceLines(text)
    lines = source.lines
    n = len(lines)
    metadata: dict = {"encoding": encoding} if encoding else {}
    front_title, i = _front_matter(lines)
    blocks: list[Block] = []
    paragraph_start = -1

    def flush(end: int) -> None:
        nonlocal paragraph_start
        if paragraph_start >= 0:
            blocks.extend(source.run(paragraph_start, end - 1))
            paragraph_start = -1

    while i < n:
        line = lines[i]
        if not line or line.isspace():
            flush(i)
            i += 1
            continue
        first = line.lstrip()[:1]
        if first in "`~":
            fence = _FENCE_OPEN.match(line)
            if fence and not (fence.group(1)[0] == "`" and "`" in fence.group(2)):
                flush(i)
                close = _closing_fence(lines, i + 1, fence.group(1))
                blocks.extend(source.run(i + 1, close - 1, kind="code"))
                i = close + 1
                continue
        elif first == "#":
            atx = _ATX.match(line)
            if atx:
                flush(i)
                if atx.group(2):
                    block = source.span(i, atx.start(2), atx.end(2), "heading", len(atx.group(1)))
                    if block is not None:
                        blocks.append(block)
                i += 1
                continue
        if first in "=-" and paragraph_start >= 0 and _SETEXT.match(line):
            heading = source.block(paragraph_start, i - 1, "heading", 1 if first == "=" else 2)
            paragraph_start = -1
            if heading is not None:
                blocks.append(heading)
            i += 1
            continue
        if first in "-*_" and paragraph_start < 0 and _THEMATIC_BREAK.match(line):
            i += 1
            continue
        if paragraph_start < 0:
            paragraph_start = i
        i += 1
    flush(n)

    title = front_title or _heading_title(text, blocks) or fallback_title
    if front_title:
        metadata["front_matter"] = True
    return ParsedDocument(text, title, "markdown", tuple(blocks), metadata)


def _closing_fence(lines: list[str], start: int, opening: str) -> int:
    """Index of the line closing a fence opened with ``opening``; ``len(lines)`` if it never closes."""
    char, length = opening[0], len(opening)
    for j in range(start, len(lines)):
        line = lines[j]
        if char in line:
            close = _FENCE_CLOSE.match(line)
            if close and close.group(1)[0] == char and len(close.group(1)) >= length:
                return j
    return len(lines)


def _front_matter(lines: list[str]) -> tuple[str, int]:
    """``(title, first body line)``: skips ``---``/``+++`` front matter at the top of the file."""
    if not lines or lines[0].rstrip() not in ("---", "+++"):
        return "", 0
    marker = lines[0].rstrip()
    if len(lines) < 3 or not _FRONT_MATTER_KEY.match(lines[1]):
        return "", 0
    closers = ("---", "...") if marker == "---" else ("+++",)
    title = ""
    for j in range(1, min(len(lines), _FRONT_MATTER_MAX_LINES)):
        stripped = lines[j].rstrip()
        if stripped in closers:
            return title, j + 1
        match = _FRONT_MATTER_TITLE.match(stripped)
        if match and not title:
            title = match.group(1).strip("'\"").strip()
    return "", 0


def _heading_title(text: str, blocks: list[Block]) -> str:
    """The first level-1 heading, else the first heading of any level."""
    first_heading = ""
    for block in blocks:
        if block.kind == "heading":
            if block.level == 1:
                return _one_line(text[block.start:block.end])
            if not first_heading:
                first_heading = _one_line(text[block.start:block.end])
    return first_heading


def _one_line(text: str) -> str:
    return " ".join(text.split())
